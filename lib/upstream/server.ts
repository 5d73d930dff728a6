import { Pool, errors as undiciErrors } from "undici";
import type { Dispatcher } from "undici";
import type { Attributes } from "@opentelemetry/api";
import { z } from "zod";
import { GatewayError, asGatewayError, fail } from "../errors";
import type { GenerateRequest } from "../schemas";
import type { ServerHealthFailure } from "../api-shapes";
import { GenerateResponse, UpstreamHealth, ValidationDetail, requestJson } from "../schemas";
import { parseSkippingString } from "./lean-json";
import { startUpstreamSpan } from "./tracing";

export interface UpstreamOptions {
  /** Generations this gateway may run on the server at once; the pool keeps room beside them for health and metrics. */
  maxConcurrent: number;
  requestTimeoutMs: number;
  maxResponseBytes: number;
  /** TEXT2IMAGE_SERVER_TOKEN: sent as `Authorization: Bearer`, in place of credentials in the URL. */
  serverToken?: string | undefined;
  /** The Retry-After of a 503 that came without one: the gateway's own estimate of when to try again. */
  retryAfterSeconds?: () => number;
}

/** Health and metrics must answer fast or count as down, whatever REQUEST_TIMEOUT says. */
const CONTROL_TIMEOUT_MS = 5000;
const CONNECT_TIMEOUT_MS = 10_000;
const CONTROL_CONNECTIONS = 4;
/** Enough of an error body to find its `detail`; the rest is dropped. */
const ERROR_BODY_LIMIT = 64 * 1024;

/** A call's path, and its name in traces. */
type Operation = "generate" | "generate-stream" | "health" | "metrics";

/** A generation, POSTed; health and metrics are GETs without one. */
interface Generation {
  request: GenerateRequest;
  context: CallContext;
  signal: AbortSignal;
}

/** What the gateway knows of a generate call beyond its body. */
export interface CallContext {
  queueWaitMs?: number;
  /** Sent as `x-request-id`, so the GPU server's logs can be matched with the gateway's. */
  requestId?: string;
  /** Put the prompt text on the trace (LOG_PROMPTS=true); by default only its length. */
  logPrompt?: boolean;
  /** The caller's W3C trace headers: passed on when the gateway does not trace itself. */
  traceContext?: Record<string, string>;
}

/** undici's codes for a connection that was never made (no byte of the request reached the server), and their errors. */
const NOT_CONNECTED = new Map<unknown, (server: string, cause: unknown) => GatewayError>([
  ["ECONNREFUSED", fail.upstreamRefused],
  ["ENOTFOUND", fail.upstreamUnresolvable],
  ["EAI_AGAIN", fail.upstreamUnresolvable],
  ["UND_ERR_CONNECT_TIMEOUT", fail.upstreamConnectTimeout],
]);

/**
 * Whether a failed call never reached the server, so another may take it with
 * no risk of a generation run twice. Anything else may have reached a GPU and
 * is never replayed, as nginx does not replay a non-idempotent POST.
 */
export function neverSent(error: unknown): boolean {
  if (!(error instanceof GatewayError)) return false;
  return NOT_CONNECTED.has((error.cause as { code?: unknown } | null | undefined)?.code);
}

/** A 2xx answer whose body is still to be read. */
export interface OpenResponse {
  /** The body as it arrives; failures are thrown as GatewayErrors. */
  chunks: AsyncIterable<Buffer>;
  /**
   * Drops the body and the deadline; idempotent. `finished`: the caller saw the
   * server's last word (a stream's final event), so the server is done even if
   * the body was not read to its end; else it may still be working on it.
   */
  close(finished?: boolean): void;
}

export type HealthResult =
  | { ok: true; health: UpstreamHealth }
  /** `failure`: the classified error, when the call itself failed (the balancer counts it). */
  | ({ ok: false; failure?: GatewayError } & ServerHealthFailure);

/** A health result as /api/health reports it: the server's own answer, or why there is none. */
export function reportedHealth(result: HealthResult): UpstreamHealth | ServerHealthFailure {
  return result.ok ? result.health : { status: result.status, error: result.error };
}

/** One GPU server: a keep-alive undici pool, its timeouts and caps, and every way a call can fail as a GatewayError. */
export class UpstreamServer {
  /** The URL as it may be shown: its origin and what follows the host, without user name or password. */
  readonly publicUrl: string;
  private readonly pool: Pool;
  private readonly basePath: string;
  private readonly authorization: string | undefined;

  constructor(
    private readonly url: URL,
    private readonly options: UpstreamOptions,
  ) {
    this.publicUrl = `${url.origin}${url.pathname}${url.search}${url.hash}`.replace(/\/$/, "");
    this.basePath = url.pathname.replace(/\/+$/, "");
    this.authorization = options.serverToken
      ? `Bearer ${options.serverToken}`
      : url.username || url.password
        ? `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString("base64")}`
        : undefined;
    this.pool = new Pool(url.origin, {
      connections: options.maxConcurrent + CONTROL_CONNECTIONS,
      connect: { timeout: CONNECT_TIMEOUT_MS },
      headersTimeout: options.requestTimeoutMs,
      bodyTimeout: options.requestTimeoutMs,
      maxResponseSize: options.maxResponseBytes,
    });
  }

  /** POST /generate: the answer as it came, in its chunks (megabytes are never joined), once checked to hold an image. */
  async generate(request: GenerateRequest, signal: AbortSignal, context: CallContext = {}): Promise<Buffer[]> {
    const chunks = await this.call("generate", { request, context, signal });
    checkGenerateResponse(chunks);
    return chunks;
  }

  /** POST /generate-stream, once the server answered 2xx; the chunks' failures come out classified. */
  generateStream(request: GenerateRequest, signal: AbortSignal, context: CallContext = {}): Promise<OpenResponse> {
    return this.open("generate-stream", { request, context, signal });
  }

  /** GET /health, never throwing: the failure is part of the report. */
  async health(): Promise<HealthResult> {
    try {
      const bytes = Buffer.concat(await this.call("health"));
      const parsed = UpstreamHealth.safeParse(parseJson(() => JSON.parse(bytes.toString("utf8")) as unknown));
      if (!parsed.success) return { ok: false, status: "error_invalid_response", error: "health answer is not a JSON object" };
      return { ok: true, health: parsed.data };
    } catch (error) {
      const failure = asGatewayError(error);
      return { ok: false, status: healthStatus(failure), error: failure.message, failure };
    }
  }

  /** GET /metrics: the server's JSON bytes, checked to be a JSON object. */
  async metrics(): Promise<Buffer> {
    const bytes = Buffer.concat(await this.call("metrics"));
    const value = parseJson(() => JSON.parse(bytes.toString("utf8")) as unknown);
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw fail.upstreamBadResponse("metrics are not a JSON object");
    }
    return bytes;
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  /** One request with its 2xx body read whole (the pool caps its size), in the chunks it arrived in. */
  private async call(operation: Operation, generation?: Generation): Promise<Buffer[]> {
    const response = await this.open(operation, generation);
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of response.chunks) chunks.push(chunk);
      return chunks;
    } finally {
      response.close();
    }
  }

  /**
   * Sends a request and waits for a 2xx answer's headers (any other status is
   * the error table's). The deadline (REQUEST_TIMEOUT for a generation, the
   * whole exchange) and the caller's signal abort it; `close()` frees
   * connection and timer, and must come.
   */
  private async open(operation: Operation, generation?: Generation): Promise<OpenResponse> {
    const signal = generation?.signal;
    const timeoutMs = generation ? this.options.requestTimeoutMs : CONTROL_TIMEOUT_MS;
    const deadline = new AbortController();
    const timer = setTimeout(() => {
      deadline.abort(new DOMException("deadline", "TimeoutError"));
    }, timeoutMs);
    const span = startUpstreamSpan(operation, this.url, generation ? generateAttributes(generation) : {}, generation?.context.traceContext);
    let received = 0;
    const release = (error?: GatewayError) => {
      clearTimeout(timer);
      span.end({ bytes: received, error });
    };
    const failed = (error: unknown) => {
      // undici fails with the abort's reason: the caller's is whatever made it go (Next's own ResponseAborted, say, or the drain's 503).
      const failure = signal?.aborted && error === signal.reason ? fail.aborted(error) : this.classify(error, timeoutMs);
      release(failure);
      return failure;
    };
    const headers: Record<string, string> = { accept: operation === "generate-stream" ? "text/event-stream" : "application/json" };
    if (generation) headers["content-type"] = "application/json";
    if (this.authorization) headers.authorization = this.authorization;
    if (generation?.context.requestId) headers["x-request-id"] = generation.context.requestId;
    try {
      const response = await this.pool.request({
        path: `${this.basePath}/${operation}`,
        method: generation ? "POST" : "GET",
        headers: { ...headers, ...span.headers },
        body: generation && requestJson(generation.request),
        signal: signal ? AbortSignal.any([signal, deadline.signal]) : deadline.signal,
        headersTimeout: timeoutMs,
      });
      span.setStatus(response.statusCode);
      if (response.statusCode < 200 || response.statusCode > 299) throw await statusError(response, this.options.retryAfterSeconds);
      const body = response.body;
      async function* chunks(): AsyncGenerator<Buffer> {
        try {
          for await (const chunk of body as AsyncIterable<Buffer>) {
            received += chunk.length;
            yield chunk;
          }
        } catch (error) {
          throw failed(error);
        }
      }
      return {
        chunks: chunks(),
        close: () => {
          body.destroy();
          release();
        },
      };
    } catch (error) {
      throw failed(error);
    }
  }

  /** Maps undici's failures by `code` (see nodejs/undici docs/api/Errors.md). */
  private classify(error: unknown, timeoutMs: number): GatewayError {
    if (error instanceof GatewayError) return error;
    if (error instanceof DOMException || (error instanceof Error && error.name === "AbortError")) {
      return error.name === "TimeoutError" ? fail.upstreamTimeout(timeoutMs, error) : fail.clientClosed(error);
    }
    if (error instanceof undiciErrors.ResponseExceededMaxSizeError) {
      return fail.upstreamTooLarge(this.options.maxResponseBytes, error);
    }
    const code = (error as { code?: unknown } | null)?.code;
    const notConnected = NOT_CONNECTED.get(code);
    if (notConnected) return notConnected(this.publicUrl, error);
    if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") return fail.upstreamTimeout(timeoutMs, error);
    return fail.upstreamConnection(error);
  }
}

/** Trace attributes: what the gateway knows of a generation. */
function generateAttributes({ request, context }: Generation): Attributes {
  return {
    "text2image.width": request.width,
    "text2image.height": request.height,
    "text2image.steps": request.num_inference_steps,
    "text2image.prompt_length": request.prompt.length,
    ...(context.logPrompt ? { "text2image.prompt": request.prompt } : {}),
    ...(context.queueWaitMs === undefined ? {} : { "gateway.queue_wait_ms": context.queueWaitMs }),
  };
}

/** The original gateway's `text2image_server.status` for a failed health call. */
function healthStatus(failure: GatewayError): string {
  if (failure.code === "upstream_status") return `error_${failure.upstreamStatus ?? failure.status}`;
  if (failure.code === "upstream_bad_response") return "error_invalid_response";
  return failure.code === "upstream_credentials" ? "error_credentials" : "unreachable";
}

function parseJson<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw fail.upstreamBadResponse("body is not JSON", error);
  }
}

/** Checks a generate answer without decoding or joining its image (see lean-json.ts). */
function checkGenerateResponse(chunks: readonly Buffer[]): void {
  const parsed = parseJson(() => parseSkippingString(chunks, "image_base64"));
  if (!parsed.skippedLength) throw fail.upstreamBadResponse("no image_base64 in the answer");
  const shape = GenerateResponse.safeParse({ ...(parsed.value as object), image_base64: "-" });
  if (!shape.success) throw fail.upstreamBadResponse("answer does not match the contract", shape.error);
}

/** The error for a non-2xx answer, with the upstream's `detail` when it sent one. */
async function statusError(response: Dispatcher.ResponseData, estimate?: () => number): Promise<GatewayError> {
  const chunks: Buffer[] = [];
  let length = 0;
  // Leaving the loop early (the limit, a failure) destroys the body: the stream's iterator does.
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    length += chunk.length;
    if (length >= ERROR_BODY_LIMIT) break;
  }
  if (response.statusCode === 401 || response.statusCode === 403) return fail.upstreamCredentials(response.statusCode);
  const text = Buffer.concat(chunks).toString("utf8");
  let body: { detail?: unknown } | null | undefined;
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // not JSON: the detail is the raw text
  }
  // A 422 in FastAPI's shape: relayed as the list it is (a client may read it field by field).
  const list = response.statusCode === 422 ? FastApiValidation.safeParse(body) : undefined;
  if (list?.success) return fail.upstreamValidation(list.data.detail);
  const detail =
    typeof body?.detail === "string"
      ? body.detail
      : body?.detail !== undefined
        ? JSON.stringify(body.detail)
        : text.trim().slice(0, 500) || `HTTP ${response.statusCode}`;
  // The genuine server's 503s (its queue full, no CUDA, no model) say nothing of when: clients, OpenAI's SDKs among them, wait for Retry-After.
  const sent = response.headers["retry-after"];
  const retryAfter = typeof sent === "string" ? sent : response.statusCode === 503 && estimate ? String(estimate()) : undefined;
  return fail.upstreamStatus(response.statusCode, detail, retryAfter);
}

const FastApiValidation = z.object({ detail: z.array(ValidationDetail) });
