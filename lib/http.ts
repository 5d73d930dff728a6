import { after } from "next/server";
import { GatewayError, asGatewayError, fail, openAiError } from "./errors";
import { parseJsonObject } from "./json-object";
import { REQUEST_ID_HEADER, RequestRecord } from "./observe/request";
import type { RouteEntry } from "./routes";
import { registry } from "./registry";
import { admit, takeRateLimit } from "./security";
import type { HeaderList } from "./security";
import { CONTENT_LENGTH_HEADER } from "./security/node-guard.mjs";

/** What a handler gets besides the request: its record, a way to run something once the response is closed, the headers any answer carries. */
export interface RequestContext {
  record: RequestRecord;
  /** Who asks, on a route with access rules (see `admit`). */
  caller?: string;
  /** A task returning a promise keeps the function alive until it settles (on Vercel, its waitUntil). */
  afterResponse: (task: () => unknown) => void;
  headers: HeaderList;
}

export type Handler = (request: Request, context: RequestContext) => Response | Promise<Response>;
type Method = "GET" | "HEAD" | "POST";

/**
 * A route's exports: the handlers behind the error table, 405 with `Allow` for
 * other methods (Next would answer an empty body). The entry's path labels logs
 * and metrics (an alias counts as the route it lands on); an entry's `access`
 * handlers are behind the API key and rate limit; OPTIONS stays open. HEAD runs
 * the GET and drops its body, unless the route gives a HEAD of its own: one
 * whose GET asks the GPU server, opens a file or starts a stream must.
 * `runAfterResponse` is Next's after(), which an in-process test replaces.
 */
export function route(entry: RouteEntry, handlers: Partial<Record<Method, Handler>>, runAfterResponse: (task: () => Promise<unknown>) => void = after) {
  const allow = handlers.GET ? ["GET", "HEAD", ...Object.keys(handlers).filter((m) => m !== "GET" && m !== "HEAD")] : Object.keys(handlers);
  const notAllowed: Handler = (request) => {
    throw fail.methodNotAllowed(request.method, allow);
  };
  const methods = [...allow, "OPTIONS"];
  const options: Handler = (request) =>
    new Response(null, { status: 204, headers: [["Allow", methods.join(", ")], ...registry().access.cors.preflightHeaders(request.headers, methods)] });
  const secured = entry.access ? (handler: Handler) => admitted(handler, entry.access === "generation") : (handler: Handler) => handler;
  const get = handlers.GET && secured(handlers.GET);
  const head = handlers.HEAD ? secured(handlers.HEAD) : get;
  const observed = (handler: Handler | undefined) => observe(entry, handler ?? notAllowed, runAfterResponse);
  return {
    GET: observed(get),
    HEAD: observed(head),
    POST: observed(handlers.POST && secured(handlers.POST)),
    PUT: observed(notAllowed),
    PATCH: observed(notAllowed),
    DELETE: observed(notAllowed),
    OPTIONS: observed(options),
  };
}

/**
 * One request, observed: its id (kept from `x-request-id` or made) is echoed,
 * a thrown error becomes the error table's answer (here only), a HEAD gets the
 * GET's answer without body, and the record is finished (one log line, its
 * metrics) when the response is given, or later if the handler holds it.
 * What the handler left to run once the response is closed runs whatever
 * happens, so no failure can keep a generation counted in flight.
 */
export function observe(entry: RouteEntry, handler: Handler, runAfterResponse: (task: () => Promise<unknown>) => void = after): (request: Request) => Promise<Response> {
  return async (request) => {
    const record = new RequestRecord(entry, request);
    const tasks: (() => unknown)[] = [];
    const context: RequestContext = { record, afterResponse: (task) => tasks.push(task), headers: [[REQUEST_ID_HEADER, record.id]] };
    try {
      context.headers.push(...registry().access.cors.responseHeaders(request.headers.get("origin")));
      let response: Response;
      try {
        response = await handler(request, context);
      } catch (error) {
        record.failed(error);
        response = errorAnswer(error, record.id, entry.errors === "openai");
      }
      record.responded(response.status);
      if (request.method === "HEAD") {
        await response.body?.cancel();
        response = new Response(null, { status: response.status, headers: response.headers });
      }
      // Set in place: every answer is a Response the gateway made, whose headers can change (Vary is added to, not replaced).
      for (const [name, value] of context.headers) {
        if (name === "Vary") response.headers.append(name, value);
        else response.headers.set(name, value);
      }
      return response;
    } catch (error) {
      // Only a fault of the gateway's own gets here (the error table's answer failed): still a JSON 500, logged.
      record.failed(fail.internal(error));
      record.responded(500);
      return errorAnswer(fail.internal(error), record.id, entry.errors === "openai");
    } finally {
      // Next's after() runs once the response is closed; only generations need it, so health checks pay nothing.
      // Each task runs whatever the others throw, and after() waits until what they returned has settled.
      if (tasks.length > 0) runAfterResponse(() => Promise.allSettled(tasks.map(async (task) => await task())));
    }
  };
}

/** Any thrown value as the error table's answer (OpenAI's shape on /v1): unknown ones a 500, never a stack trace (the log line has the cause). */
export function errorAnswer(error: unknown, requestId: string, openAi = false): Response {
  const known = asGatewayError(error);
  const { status, body } = openAi ? openAiError(known) : { status: known.status, body: { detail: known.detail, request_id: requestId } };
  return json(body, status, { ...known.headers, "x-request-id": requestId });
}

/** A request without a valid key, over its rate limit or from a foreign site is answered before its body is read; others carry RateLimit-*. */
function admitted(handler: Handler, rateLimited: boolean): Handler {
  return async (request, context) => {
    context.caller = admit(request);
    if (rateLimited) context.headers.push(...(await takeRateLimit(context.caller)));
    return handler(request, context);
  };
}

/** A HEAD's answer: the headers a GET would carry, no body, nothing asked or read to make one. */
export function headersOnly(headers: HeadersInit): Response {
  return new Response(null, { headers });
}

/**
 * A streamed body (Vercel refuses unstreamed ones over 4.5 MB), from a buffer or an upstream answer's chunks, none copied.
 * Next reads it faster than undici's own stream over a buffer body (/api/health 0.96× the bare app against 0.87×, a trial build).
 */
export function streamed(bytes: Uint8Array | readonly Uint8Array[]): ReadableStream<Uint8Array> {
  const chunks = bytes instanceof Uint8Array ? [bytes] : bytes;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
}

/**
 * A JSON answer with its Content-Length (the guard makes CONTENT_LENGTH_HEADER one; Next drops a route's own):
 * sent chunked, a small answer's framing cost about 6% of a fixed /api/health's throughput (a trial build, bench/ablate.ts).
 */
export function streamedJson(bytes: Uint8Array | readonly Uint8Array[], status = 200, headers: Record<string, string> = {}): Response {
  return new Response(streamed(bytes), { status, headers: { "content-type": "application/json", ...headers, [CONTENT_LENGTH_HEADER]: String(byteLength(bytes)) } });
}

export function byteLength(bytes: Uint8Array | readonly Uint8Array[]): number {
  return bytes instanceof Uint8Array ? bytes.byteLength : bytes.reduce((sum, chunk) => sum + chunk.byteLength, 0);
}

export function json(value: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return streamedJson(Buffer.from(JSON.stringify(value)), status, headers);
}

interface BodyLimits {
  maxBytes: number;
  /** The whole body must have arrived within this (408 after). */
  timeoutMs: number;
  /** Stops the read (a shutdown's drain): its reason is thrown. */
  signal?: AbortSignal;
}

/**
 * Reads a JSON object body: 415 for another content type (none is JSON, as in
 * FastAPI up to 0.115), 413 once more than `maxBytes` arrive (counted: the
 * Content-Length may lie), 400 for no JSON object. Top-level numbers come as
 * JsonNumbers with their text: a 20-digit seed keeps it, 1e19 stays a float.
 */
export async function readJsonObject(request: Request, { maxBytes, timeoutMs, signal }: BodyLimits): Promise<Record<string, unknown>> {
  const contentType = request.headers.get("content-type");
  if (contentType !== null && !isJsonType(contentType)) throw fail.unsupportedMediaType(contentType);
  if (Number(request.headers.get("content-length")) > maxBytes) throw fail.payloadTooLarge(maxBytes);

  return parseJsonObject(await readCapped(request, maxBytes, timeoutMs, signal));
}

function isJsonType(contentType: string): boolean {
  const mediaType = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  return mediaType === "application/json" || (mediaType.startsWith("application/") && mediaType.endsWith("+json"));
}

async function readCapped(request: Request, maxBytes: number, timeoutMs: number, signal: AbortSignal | undefined): Promise<Uint8Array> {
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  // One deadline for the whole body: a client trickling a byte at a time gets no longer than one sending nothing.
  let stop!: (error: unknown) => void;
  const stopped = new Promise<never>((_, reject) => (stop = reject));
  const timer = setTimeout(() => {
    stop(fail.bodyTimeout(timeoutMs));
  }, timeoutMs);
  const onAbort = () => {
    stop(signal?.reason);
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  const chunks: Uint8Array[] = [];
  let length = 0;
  try {
    if (signal?.aborted) throw signal.reason;
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), stopped]);
      if (done) break;
      length += value.byteLength;
      if (length > maxBytes) throw fail.payloadTooLarge(maxBytes);
      chunks.push(value);
    }
  } catch (error) {
    void reader.cancel().catch(() => undefined);
    // A body cut short by the client is its doing, not an internal error.
    throw request.signal.aborted && !(error instanceof GatewayError) ? fail.clientClosed(error) : error;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
  return Buffer.concat(chunks, length);
}
