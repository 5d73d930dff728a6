/** Talking to POST /api/generate-stream: error wording and the event stream. */
import { EventSourceParserStream } from "eventsource-parser/stream";
import { z } from "zod";
import { StreamEvent, requestJson } from "@/lib/schemas";
import type { GenerateRequest } from "@/lib/schemas";

/** A failure to show as is: the words are for people, never "HTTP 503". */
export class GenerationError extends Error {
  override name = "GenerationError";

  /** `keyRejected`: the gateway itself refused the API key (its 401 with a challenge, not a GPU server's 401 passed on). */
  constructor(
    message: string,
    readonly keyRejected = false,
  ) {
    super(message);
  }
}

/** Header values are bytes: a key with other characters cannot be sent, and is not one. */
const SENDABLE_KEY = /^[\x21-\x7e]+$/;

const ErrorBody = z.object({
  detail: z.union([z.string(), z.array(z.object({ msg: z.string() }).loose())]),
});

/** The gateway's `detail` in plain words: a string as is, a 422 list as its messages. */
export async function describeErrorResponse(response: Response): Promise<string> {
  const parsed = ErrorBody.safeParse(await response.json().catch(() => null));
  if (!parsed.success) {
    return response.status >= 500
      ? "The gateway could not run the generation and did not say why."
      : "The gateway refused the request and did not say why.";
  }
  const { detail } = parsed.data;
  return typeof detail === "string" ? detail : detail.map((item) => item.msg).join("; ");
}

/**
 * Opens the stream; resolves once the gateway has accepted the request. An
 * API key, when given, goes as `Authorization: Bearer`.
 */
export async function openStream(request: GenerateRequest, signal: AbortSignal, apiKey = ""): Promise<ReadableStream<StreamEvent>> {
  const headers: Record<string, string> = { "content-type": "application/json", accept: "text/event-stream" };
  const key = apiKey.trim();
  if (key) {
    if (!SENDABLE_KEY.test(key)) throw new GenerationError("The API key can only hold letters, digits and punctuation, without spaces.", true);
    headers.authorization = `Bearer ${key}`;
  }
  let response: Response;
  try {
    response = await fetch("/api/generate-stream", {
      method: "POST",
      headers,
      body: requestJson(request),
      signal,
    });
  } catch (error) {
    if (signal.aborted) throw error;
    throw new GenerationError("Could not reach the gateway. Check your connection and try again.");
  }
  if (!response.ok) {
    const keyRejected = response.status === 401 && response.headers.has("www-authenticate");
    throw new GenerationError(await describeErrorResponse(response), keyRejected);
  }
  if (!response.body) throw new GenerationError("The gateway answered without a stream.");
  return response.body
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream()) // skips `: keep-alive` comments
    .pipeThrough(
      new TransformStream({
        transform(message, controller) {
          const event = parseEvent(message.data);
          if (event) controller.enqueue(event);
        },
      }),
    );
}

/**
 * The events this page acts on. Any other (a type it does not know, a
 * progress event without its steps) is passed over: the GPU server may send
 * more than the page needs. Only the end of the stream must be readable.
 */
function parseEvent(data: string): StreamEvent | undefined {
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    throw new GenerationError("The gateway sent a progress update this page cannot read.");
  }
  const event = StreamEvent.safeParse(json);
  if (event.success) return event.data;
  const type = (json as { type?: unknown } | null)?.type;
  if (type === "complete" || type === "error") throw new GenerationError("The gateway sent a result this page cannot read.");
  return undefined;
}
