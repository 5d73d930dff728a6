import { SpanKind, SpanStatusCode, context, propagation, trace } from "@opentelemetry/api";
import type { Attributes } from "@opentelemetry/api";
import type { GatewayError } from "../errors";

/**
 * A span per call to the GPU server, by hand: @vercel/otel instruments global
 * fetch, not an undici Pool, and here the span carries what the gateway knows
 * (size, steps, queue wait, bytes) and lives as long as a stream. With tracing
 * off it is a no-op, and the caller's trace context goes on as it came.
 */
const tracer = trace.getTracer("text2image-gateway");

export interface UpstreamSpan {
  /** W3C trace context for the request, so the GPU server's spans join this trace. */
  readonly headers: Record<string, string>;
  setStatus(status: number): void;
  /** Ends the span once; later calls are ignored. */
  end(outcome?: { bytes?: number; error?: GatewayError }): void;
}

/** W3C Trace Context: version, trace-id, parent-id, flags, lower-case hex; a later version may add fields after a dash. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
/** A tracestate list-member: a key (simple, or tenant@system) and a value of printable ASCII without "," or "=", no trailing space. */
const TRACESTATE_MEMBER = /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
const TRACESTATE_MAX_CHARS = 512;
const TRACESTATE_MAX_MEMBERS = 32;

/**
 * The caller's W3C trace context, to pass on when the gateway does not trace:
 * only a valid traceparent (a later version as version 00, all the receiver
 * may rely on), and its tracestate only if valid and within the 512
 * characters the specification asks receivers to take. Anything else the GPU
 * server never sees.
 */
export function incomingTraceContext(headers: Headers): Record<string, string> {
  const parent = TRACEPARENT.exec(headers.get("traceparent") ?? "");
  if (!parent) return {};
  const [, version = "", traceId = "", parentId = "", flags = "", rest] = parent;
  if (version === "ff" || (version === "00" && rest !== undefined) || /^0+$/.test(traceId) || /^0+$/.test(parentId)) return {};
  const context: Record<string, string> = { traceparent: `00-${traceId}-${parentId}-${flags}` };
  const state = headers.get("tracestate");
  if (state !== null && validTracestate(state)) context.tracestate = state;
  return context;
}

function validTracestate(state: string): boolean {
  if (state.length > TRACESTATE_MAX_CHARS) return false;
  const members = state.split(",").map((member) => member.trim()).filter((member) => member !== "");
  const keys = new Set(members.map((member) => member.slice(0, member.indexOf("="))));
  return members.length > 0 && members.length <= TRACESTATE_MAX_MEMBERS && keys.size === members.length && members.every((member) => TRACESTATE_MEMBER.test(member));
}

export function startUpstreamSpan(operation: string, server: URL, attributes: Attributes, incoming: Record<string, string> = {}): UpstreamSpan {
  const span = tracer.startSpan(`upstream ${operation}`, {
    kind: SpanKind.CLIENT,
    attributes: {
      "server.address": server.hostname,
      "server.port": Number(server.port) || (server.protocol === "https:" ? 443 : 80),
      ...attributes,
    },
  });
  const headers: Record<string, string> = {};
  propagation.inject(trace.setSpan(context.active(), span), headers);
  if (headers.traceparent === undefined) Object.assign(headers, incoming);
  let ended = false;
  return {
    headers,
    setStatus: (status) => {
      span.setAttribute("http.response.status_code", status);
    },
    end: ({ bytes, error } = {}) => {
      if (ended) return;
      ended = true;
      if (bytes !== undefined) span.setAttribute("http.response.body.size", bytes);
      if (error) {
        span.setAttribute("error.type", error.code);
        span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
      }
      span.end();
    },
  };
}
