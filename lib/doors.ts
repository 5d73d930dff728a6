/** The pipeline's doors onto HTTP: JSON for /api/generate, server-sent events for /api/generate-stream. */
import "server-only";
import { asGatewayError, fail } from "./errors";
import { byteLength, readJsonObject, streamed, streamedJson } from "./http";
import type { RequestContext } from "./http";
import type { RequestRecord } from "./observe/request";
import { Generation } from "./pipeline";
import { registry } from "./registry";
import { EventStream } from "./sse";
import type { UpstreamEvent } from "./sse";
import { answerImage } from "./upstream/image";

/** Begins a generation for `request`, released once its response is closed, and reads its body into it. */
async function accepted(request: Request, client: AbortSignal, { record, afterResponse }: RequestContext): Promise<Generation> {
  const { config } = registry();
  const generation = new Generation(registry(), client, record);
  afterResponse(() => {
    generation.close();
  });
  await generation.accept((signal) => readJsonObject(request, { maxBytes: config.maxBodyBytes, timeoutMs: config.bodyTimeoutMs, signal }));
  return generation;
}

/**
 * POST /api/generate: the GPU server's answer, unchanged, or with Accept:
 * image/* the image's own bytes. Its slot is free once the server answered,
 * not once the client read it.
 */
export async function generate(request: Request, context: RequestContext): Promise<Response> {
  const binary = prefersImageBytes(request.headers.get("accept"));
  const generation = await accepted(request, request.signal, context);
  const answer = await generation.image();
  const { response, bytes } = binary ? imageResponse(answer) : { response: streamedJson(answer), bytes: byteLength(answer) };
  context.headers.push(["Vary", "Accept"]);
  context.record.sent(bytes);
  // Answered while draining: the client's next request should open a connection elsewhere.
  if (registry().drain.draining) response.headers.set("connection", "close");
  return response;
}

const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/*"]);

/** Whether Accept asks for the image itself over JSON (the default): by its q-value, a tie going to the one named first. */
function prefersImageBytes(accept: string | null): boolean {
  let image = { q: 0, at: Infinity };
  let json = { q: 0, at: Infinity };
  for (const [at, part] of (accept ?? "").split(",").entries()) {
    const [type = "", ...params] = part.split(";").map((piece) => piece.trim().toLowerCase());
    const q = Number(params.find((param) => param.startsWith("q="))?.slice(2) ?? 1);
    const entry = { q: Number.isFinite(q) ? q : 0, at };
    if (IMAGE_TYPES.has(type) && entry.q > image.q) image = entry;
    else if (type === "application/json" && entry.q > json.q) json = entry;
  }
  return image.q > 0 && (image.q > json.q || (image.q === json.q && image.at < json.at));
}

/**
 * The GPU server's image as its own bytes and type (a quarter fewer than its
 * base64, no decoding in the browser), the answer's other fields in headers.
 */
function imageResponse(answer: Buffer[]): { response: Response; bytes: number } {
  const image = answerImage(answer.length === 1 ? (answer[0] as Buffer) : Buffer.concat(answer));
  const headers: [string, string][] = [
    ["content-type", image.contentType],
    ["x-image-sha256", image.sha256],
  ];
  if (image.seed !== undefined) headers.push(["x-seed", image.seed]);
  if (typeof image.fields.generation_time_ms === "number") headers.push(["x-generation-time-ms", String(image.fields.generation_time_ms)]);
  if (typeof image.fields.image_id === "string") headers.push(["x-image-id", image.fields.image_id]);
  // Streamed, as the JSON answer is (Vercel refuses unstreamed bodies over 4.5 MB).
  return { response: new Response(streamed(image.bytes), { headers }), bytes: image.bytes.length };
}

/**
 * POST /api/generate-stream. The stream starts with something to send: `queued`
 * events, or the upstream's 200. Until then a failure is the usual JSON error;
 * after, a final `error` event. The record stays open until the stream ends.
 */
export async function generateStream(request: Request, context: RequestContext): Promise<Response> {
  // The client is gone when its request is aborted, or when it cancels the stream it reads.
  const client = followClient(request.signal, context);
  const generation = await accepted(request, client.stop.signal, context);
  const events = new EventStream(registry().config.sseKeepAliveMs, client.gone);

  const { promise: queued, resolve: markQueued }: PromiseWithResolvers<void> = Promise.withResolvers();
  const opening = generation.events((position) => {
    events.send({ type: "queued", queue_position: position, position });
    markQueued();
  });
  try {
    await Promise.race([opening, queued]);
  } catch (error) {
    events.end();
    throw error;
  }
  void relay(opening, events, context.record).finally(context.record.hold());
  return events.response();
}

/** A controller that stops with the client (`gone` says it left), its listener dropped once the response is done. */
export function followClient(client: AbortSignal, context: RequestContext): { stop: AbortController; gone: () => void } {
  const stop = new AbortController();
  const gone = () => {
    stop.abort(fail.clientClosed(client.reason));
  };
  client.addEventListener("abort", gone, { once: true });
  context.afterResponse(() => {
    client.removeEventListener("abort", gone);
  });
  return { stop, gone };
}

/** Passes the upstream's events to the client as each one completes, unchanged; a failure ends the stream with an `error` event. */
async function relay(opening: Promise<AsyncGenerator<UpstreamEvent>>, events: EventStream, record: RequestRecord): Promise<void> {
  try {
    for await (const { bytes } of await opening) {
      events.write(bytes);
      record.sent(bytes.length);
    }
    events.end();
  } catch (error) {
    record.failed(error);
    const known = asGatewayError(error);
    events.fail(known.code, known.message);
  }
}
