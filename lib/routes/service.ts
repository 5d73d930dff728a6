/** The doors that tell of the service: what it is, its health, its metrics, its documentation. */
import { z } from "zod";
import packageJson from "../../package.json";
import { GatewayHealth, GatewayInfo, UpstreamMetrics } from "../api-shapes";
import { fail } from "../errors";
import { DEFAULT_SERVER, commonErrors, defaults, errorResponse, json } from "./entry";
import type { RouteEntry } from "./entry";

/** A GET /api/health answer with the genuine server's fields, as an example. */
function healthExample(gateway: Record<string, unknown>, server: Record<string, unknown>): Record<string, unknown> {
  const load = { in_flight: 0, queued: 0, max_concurrent: defaults.maxConcurrent, orphaned: 0 };
  const serverHealth = { status: "healthy", model_loaded: true, cuda_available: true, cuda_device: "NVIDIA GeForce RTX 4090", current_queue_size: 0, active_generations: 0, available_slots: 2 };
  return { status: "healthy", gateway: "running", ...load, ...gateway, text2image_server: { ...serverHealth, ...server } };
}

export const SERVICE_ROUTES = {
  info: {
    path: "/api",
    operations: () => ({
      get: {
        operationId: "getInfo",
        summary: "What this service is",
        description: "The original gateway's `GET /`. Credentials in the GPU server's URL are never shown.",
        tags: ["service"],
        responses: {
          200: json("The gateway's name, version and GPU server", GatewayInfo, {
            running: ["A running gateway", { message: "Text-to-Image API Gateway", version: packageJson.version, status: "running", text2image_server_url: DEFAULT_SERVER, mode: "gateway" }],
          }),
          ...commonErrors("get"),
        },
      },
    }),
  },
  health: {
    path: "/api/health",
    alias: "/health",
    polled: true,
    operations: () => ({
      get: {
        operationId: "getHealth",
        summary: "Health of the gateway and the GPU server",
        description: "Always 200: `status` says whether the GPU server can generate. One upstream call (5 s timeout) serves all callers for about a second.",
        tags: ["service"],
        responses: {
          200: json("The gateway's load and the GPU server's own health", GatewayHealth, {
            healthy: ["GPU server up", healthExample({ in_flight: 1 }, { active_generations: 1, available_slots: 1 })],
            noCuda: [
              "The GPU server answers but cannot generate (every generation would get its 503 CUDA not available)",
              healthExample({ status: "degraded" }, { cuda_available: false, cuda_device: null }),
            ],
            orphans: [
              "Two clients left; the GPU server still runs their generations, which hold their slots",
              healthExample({ in_flight: 3, orphaned: 2 }, { current_queue_size: 2, active_generations: 1, available_slots: 1 }),
            ],
            unreachable: [
              "GPU server unreachable",
              { ...healthExample({ status: "degraded" }, {}), text2image_server: { status: "unreachable", error: fail.upstreamRefused(DEFAULT_SERVER, null).message } },
            ],
          }),
          ...commonErrors("get"),
        },
      },
    }),
  },
  metrics: {
    path: "/api/metrics",
    alias: "/metrics",
    operations: () => ({
      get: {
        operationId: "getMetrics",
        summary: "The GPU server's metrics",
        description: "The GPU server's own `/metrics` JSON, passed through unchanged.",
        tags: ["service"],
        responses: {
          200: json("The GPU server's counters, free form", UpstreamMetrics, {
            counters: [
              "Counters of text2image_server.py",
              { total_requests: 120, successful_generations: 117, failed_generations: 3, average_generation_time_ms: 3410, current_queue_size: 0, active_generations: 1 },
            ],
          }),
          ...commonErrors("get"),
          502: errorResponse(502, "The GPU server's metrics could not be had.", {
            refused: ["GPU server refuses connections", fail.metricsUnavailable(fail.upstreamRefused(DEFAULT_SERVER, null))],
            badResponse: ["Not JSON", fail.metricsUnavailable(fail.upstreamBadResponse("the answer is not JSON"))],
          }),
        },
      },
    }),
  },
  gatewayMetrics: {
    path: "/api/metrics/gateway",
    polled: true,
    operations: () => ({
      get: {
        operationId: "getGatewayMetrics",
        summary: "The gateway's own metrics",
        description:
          "Prometheus text exposition: requests by route and status, latency histograms (queue wait, upstream, total), in-flight and queued gauges, upstream errors by kind, rejections, client aborts, bytes sent, upstream up/down, and Node's process metrics.",
        tags: ["service"],
        responses: {
          200: {
            description: "Prometheus text format 0.0.4",
            content: {
              "text/plain": {
                schema: z.string(),
                examples: { scrape: { summary: "An excerpt", value: 'gateway_requests_total{route="/api/generate",status="200"} 3\ngateway_in_flight 0\n' } },
              },
            },
          },
          ...commonErrors("get"),
        },
      },
    }),
  },
  openApi: {
    path: "/api/openapi.json",
    operations: () => ({
      get: {
        operationId: "getOpenApiDocument",
        summary: "This document",
        description: "The OpenAPI 3.1 document of every endpoint, generated from the gateway's zod schemas. `/docs` renders it.",
        tags: ["service"],
        responses: { 200: { description: "The OpenAPI document", content: { "application/json": { schema: { type: "object" } } } }, ...commonErrors("get") },
      },
    }),
  },
} as const satisfies Record<string, RouteEntry>;
