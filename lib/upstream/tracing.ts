import { SpanKind, SpanStatusCode, context, propagation, trace } from "@opentelemetry/api";
import type { Attributes } from "@opentelemetry/api";
import type { GatewayError } from "../errors";

/**
 * A span per call to the GPU server. @vercel/otel instruments global fetch
 * only; the gateway talks through an undici Pool, so its calls are traced
 * here, by hand: no monkey-patching, and the span can carry what the gateway
 * knows (image size, steps, queue wait, bytes) and live as long as a stream.
 * Without a registered SDK (tracing off) the span is a no-op, and the
 * caller's own trace context, if it sent one, goes to the GPU server as it came.
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
