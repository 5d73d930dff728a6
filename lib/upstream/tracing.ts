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

/** The W3C trace context headers of an incoming request, to pass on when the gateway does not trace. */
export const TRACE_CONTEXT_HEADERS = ["traceparent", "tracestate"] as const;

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
