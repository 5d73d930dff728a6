/** Talking to the gateway: error wording, the generate stream, and jobs with their event streams. */
import { EventSourceParserStream } from "eventsource-parser/stream";
import { z } from "zod";
import { StreamEvent, requestJson } from "@/lib/schemas";
import { Job, JobEvent } from "@/lib/api-shapes";
import type { GenerateRequest } from "@/lib/schemas";

/** A failure to show as is: the words are for people, never "HTTP 503". */
export class GenerationError extends Error {
  override name = "GenerationError";

  /**
   * `keyRejected`: the gateway itself refused the API key (its 401 with a
   * challenge, not a GPU server's 401 passed on). `status`: the gateway's
   * answer, when it gave one.
   */
  constructor(
    message: string,
    readonly keyRejected = false,
    readonly status?: number,
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
 * A request to the gateway, with the API key (when given) as `Authorization:
 * Bearer`; resolves with a 2xx answer, else throws a GenerationError in the
 * gateway's words. An abort is thrown as it is.
 */
const CLIENT_TOKEN = "text2image-gateway.client-token";
let sessionToken: string | undefined;

/**
 * This browser's own token, kept with the page: without API keys the gateway
 * lists a caller's jobs by it (X-Client-Token), not by an address that others
 * behind the same NAT share. Where storage is refused, one for this tab.
 */
function clientToken(): string {
  try {
    let token = localStorage.getItem(CLIENT_TOKEN);
    if (!token) localStorage.setItem(CLIENT_TOKEN, (token = randomToken()));
    return token;
  } catch {
    return (sessionToken ??= randomToken());
  }
}

/** 128 random bits as hex (not crypto.randomUUID(): it is missing on plain-http pages, a LAN gateway). */
export function randomToken(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

async function call(path: string, init: RequestInit & { apiKey: string; signal?: AbortSignal }): Promise<Response> {
  const { apiKey, ...rest } = init;
  const headers = new Headers(init.headers);
  headers.set("x-client-token", clientToken());
  const key = apiKey.trim();
  if (key) {
    if (!SENDABLE_KEY.test(key)) throw new GenerationError("The API key can only hold letters, digits and punctuation, without spaces.", true);
    headers.set("authorization", `Bearer ${key}`);
  }
  let response: Response;
  try {
    response = await fetch(path, { ...rest, headers, cache: "no-store" });
  } catch (error) {
    if (init.signal?.aborted) throw error;
    throw new GenerationError("Could not reach the gateway. Check your connection and try again.");
  }
  if (!response.ok) {
    const keyRejected = response.status === 401 && response.headers.has("www-authenticate");
    throw new GenerationError(await describeErrorResponse(response), keyRejected, response.status);
  }
  return response;
}

/** A server-sent event stream's messages, parsed by `read`; `: keep-alive` comments are skipped. */
function events<T>(response: Response, read: (data: string, id: string | undefined) => T | undefined): ReadableStream<T> {
  if (!response.body) throw new GenerationError("The gateway answered without a stream.");
  return response.body
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream())
    .pipeThrough(
      new TransformStream({
        transform(message, controller) {
          const event = read(message.data, message.id);
          if (event !== undefined) controller.enqueue(event);
        },
      }),
    );
}

/**
 * The events this page acts on. Any other (a type it does not know, a
 * progress event without its steps) is passed over: the GPU server may send
 * more than the page needs. Only the end must be readable.
 */
function readEvent<T>(schema: z.ZodType<T>, data: string, ends: string[]): T | undefined {
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    throw new GenerationError("The gateway sent a progress update this page cannot read.");
  }
  const event = schema.safeParse(json);
  if (event.success) return event.data;
  const type = (json as { type?: unknown } | null)?.type;
  if (typeof type === "string" && ends.includes(type)) throw new GenerationError("The gateway sent a result this page cannot read.");
  return undefined;
}

/** POST /api/generate-stream; resolves once the gateway has accepted the request. */
export async function openStream(request: GenerateRequest, signal: AbortSignal, apiKey = ""): Promise<ReadableStream<StreamEvent>> {
  const response = await call("/api/generate-stream", {
    method: "POST",
    headers: { "content-type": "application/json", accept: "text/event-stream" },
    body: requestJson(request),
    signal,
    apiKey,
  });
  return events(response, (data) => readEvent(StreamEvent, data, ["complete", "error"]));
}

function readJob(json: unknown): Job {
  const job = Job.safeParse(json);
  if (!job.success) throw new GenerationError("The gateway sent a job this page cannot read.");
  return job.data;
}

/**
 * POST /api/jobs. The idempotency key makes a retried submit (a flaky
 * network) the same job, never a second generation.
 */
export async function submitJob(request: GenerateRequest, idempotencyKey: string, signal: AbortSignal, apiKey = ""): Promise<Job> {
  const response = await call("/api/jobs", {
    method: "POST",
    headers: { "content-type": "application/json", "idempotency-key": idempotencyKey },
    body: requestJson(request),
    signal,
    apiKey,
  });
  return readJob(await response.json());
}

/** A job's event and its id, for `Last-Event-ID` when the stream is taken up again. */
export type NumberedJobEvent = JobEvent & { eventId: string | undefined };

/** GET /api/jobs/{id}/events, from just after `lastEventId` (from the start without it). */
export async function openJobEvents(id: string, lastEventId: string | undefined, signal: AbortSignal, apiKey = ""): Promise<ReadableStream<NumberedJobEvent>> {
  const response = await call(`/api/jobs/${encodeURIComponent(id)}/events`, {
    headers: { accept: "text/event-stream", ...(lastEventId !== undefined && { "last-event-id": lastEventId }) },
    signal,
    apiKey,
  });
  return events(response, (data, eventId) => {
    const event = readEvent(JobEvent, data, ["complete", "error", "canceled"]);
    return event && { ...event, eventId };
  });
}

/** POST /api/jobs/{id}/cancel: the job's events then end with `canceled`. */
export async function cancelJob(id: string, apiKey = ""): Promise<void> {
  await call(`/api/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST", apiKey });
}

/**
 * GET /api/jobs: this caller's last jobs, newest first (one the page cannot
 * read is left out); `complete` when there are no more.
 */
export async function listJobs(limit: number, apiKey = ""): Promise<{ jobs: Job[]; complete: boolean }> {
  const response = await call(`/api/jobs?limit=${limit}`, { apiKey });
  const list = z.object({ jobs: z.array(z.unknown()), next: z.string().nullable() }).safeParse(await response.json());
  if (!list.success) throw new GenerationError("The gateway sent a job list this page cannot read.");
  const jobs = list.data.jobs.flatMap((json) => {
    const job = Job.safeParse(json);
    return job.success ? [job.data] : [];
  });
  return { jobs, complete: list.data.next === null };
}
