import { randomUUID } from "node:crypto";
import { ERRORS, GatewayError } from "../errors";
import type { ErrorCode } from "../errors";
import type { GenerationObserver } from "../pipeline";
import { registry } from "../registry";
import type { RouteEntry } from "../routes";
import type { GenerateRequest } from "../schemas";
import type { CallContext } from "../upstream/server";
import { incomingTraceContext } from "../upstream/tracing";
import { recordRequest } from "./metrics";

export const REQUEST_ID_HEADER = "x-request-id";
export const MAX_REQUEST_ID_LENGTH = 128;
// The characters of UUIDs, ULIDs, trace ids and base64: nothing that could break a log line or a header.
const SANE = /^[A-Za-z0-9._:+/=-]+$/;

type Phase = "queue" | "upstream";

/**
 * What one request did, filled in as it goes and finished once, when its answer
 * is given or its stream ends: one log line and its metrics. A polled route's
 * successes are logged at debug, so probes do not drown the log.
 */
export class RequestRecord implements GenerationObserver {
  readonly id: string;
  readonly method: string;
  private readonly startedAt = performance.now();
  private readonly phases: Partial<Record<Phase, number>> = {};
  private bytes = 0;
  private errorKind: ErrorCode | undefined;
  private cause: unknown;
  private params: GenerateRequest | undefined;
  private notes: Record<string, unknown> = {};
  private status: number | undefined;
  private holds = 0;
  private finished = false;
  private readonly traceContext: Record<string, string>;

  constructor(
    private readonly entry: RouteEntry,
    request: Request,
  ) {
    this.id = requestIdFrom(request.headers);
    this.method = request.method;
    this.traceContext = incomingTraceContext(request.headers);
  }

  /** The validated generate parameters: their sizes are logged, the prompt only with LOG_PROMPTS. */
  generating(params: GenerateRequest): void {
    this.params = params;
  }

  /** Starts timing a phase; the returned function stops it (only its first call counts). */
  begin(phase: Phase): () => void {
    const startedAt = performance.now();
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.phases[phase] = (this.phases[phase] ?? 0) + performance.now() - startedAt;
    };
  }

  /** What the upstream client sends on (the request id) and puts in its trace. */
  upstreamContext(): CallContext {
    return {
      requestId: this.id,
      queueWaitMs: ms(this.phases.queue),
      logPrompt: registry().config.logPrompts,
      traceContext: this.traceContext,
    };
  }

  /** More to log on the request's line (the OpenAI door's model and image count). */
  note(fields: Record<string, unknown>): void {
    Object.assign(this.notes, fields);
  }

  /** Bytes of the answer sent to the client. */
  sent(bytes: number): void {
    this.bytes += bytes;
  }

  /** How the request failed: a GatewayError's code, anything else is `internal` (kept for the log). */
  failed(error: unknown): void {
    if (error instanceof GatewayError) this.failedWith(error.code, error.code === "internal" ? error.cause : undefined);
    else this.failedWith("internal", error);
  }

  failedWith(kind: ErrorCode, cause?: unknown): void {
    this.errorKind = kind;
    this.cause = cause;
  }

  /** Keeps the record open past the response (a stream) until every hold is released. */
  hold(): () => void {
    this.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
      this.finishIfDone();
    };
  }

  /** The response's status is known; the record finishes now unless held. */
  responded(status: number): void {
    this.status ??= status;
    this.finishIfDone();
  }

  private finishIfDone(): void {
    if (this.finished || this.status === undefined || this.holds > 0) return;
    this.finished = true;
    try {
      this.report(this.status);
    } catch (error) {
      // Observability must never fail a request.
      console.error("gateway: could not record a request", error);
    }
  }

  private report(status: number): void {
    const durationMs = performance.now() - this.startedAt;
    const { queue: queueWaitMs, upstream: upstreamMs } = this.phases;
    const route = this.entry.path;
    recordRequest(registry().metrics, { route, status, durationMs, queueWaitMs, upstreamMs, bytes: this.bytes, errorKind: this.errorKind });

    const level =
      this.errorKind && ERRORS[this.errorKind].alarm ? "error" : status >= 500 ? "warn" : status < 400 && this.entry.polled ? "debug" : "info";
    const log = registry().logger;
    if (!log.isLevelEnabled(level)) return;

    const params = this.params;
    const line = {
      request_id: this.id,
      route,
      method: this.method,
      status,
      duration_ms: ms(durationMs),
      queue_wait_ms: ms(queueWaitMs),
      upstream_ms: ms(upstreamMs),
      bytes: this.bytes,
      error_kind: this.errorKind,
      ...(params && {
        width: params.width,
        height: params.height,
        steps: params.num_inference_steps,
        prompt_length: params.prompt.length,
        prompt: registry().config.logPrompts ? params.prompt : undefined,
      }),
      ...this.notes,
      err: this.cause,
    };
    log[level](line, "request");
  }
}

function ms(value: number | undefined): number | undefined {
  return value === undefined ? undefined : Math.round(value * 10) / 10;
}

/** The caller's `x-request-id` when it is a sane token of at most 128 characters, else a new UUID. */
export function requestIdFrom(headers: Headers): string {
  const given = headers.get(REQUEST_ID_HEADER)?.trim();
  return given && given.length <= MAX_REQUEST_ID_LENGTH && SANE.test(given) ? given : randomUUID();
}
