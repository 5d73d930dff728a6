import { afterAll, describe, expect, it } from "vitest";
import { parseConfig } from "@/lib/config";
import { createMetrics, recordRequest } from "@/lib/observe/metrics";
import { Registry } from "@/lib/registry";
import { freePort } from "../proc";

// A real registry: its limiter holds 2 and queues 5, its one GPU server refuses connections.
const gateway = new Registry(parseConfig({ TEXT2IMAGE_SERVER_URL: `http://127.0.0.1:${await freePort()}`, MAX_CONCURRENT_REQUESTS: "2" }));
const waiting = new AbortController();
for (let i = 0; i < 7; i++) void gateway.limiter.acquire(waiting.signal).catch(() => undefined);
const metrics = createMetrics(gateway);
afterAll(async () => {
  waiting.abort();
  await gateway.close(1000);
});

const base = { route: "/api/generate", queueWaitMs: undefined, upstreamMs: undefined, bytes: 0, errorKind: undefined };

describe("the gateway's metrics", () => {
  it("count each outcome where it belongs", async () => {
    recordRequest(metrics, { ...base, status: 200, durationMs: 1500, queueWaitMs: 3, upstreamMs: 1400, bytes: 1000 });
    recordRequest(metrics, { ...base, status: 503, durationMs: 1, queueWaitMs: 0, errorKind: "queue_full" });
    recordRequest(metrics, { ...base, status: 502, durationMs: 40, queueWaitMs: 1, upstreamMs: 30, errorKind: "upstream_transport" });
    recordRequest(metrics, { ...base, status: 499, durationMs: 7, queueWaitMs: 7, errorKind: "client_closed" });
    recordRequest(metrics, { ...base, route: "/api/health", status: 200, durationMs: 2 });
    const body = await metrics.registry.metrics();
    expect(metrics.registry.contentType).toMatch(/^text\/plain/);
    for (const line of [
      'gateway_requests_total{route="/api/generate",status="200"} 1',
      'gateway_requests_total{route="/api/health",status="200"} 1',
      'gateway_rejections_total{reason="queue_full"} 1',
      'gateway_rejections_total{reason="queue_timeout"} 0',
      'gateway_rejections_total{reason="rate_limited"} 0',
      'gateway_upstream_errors_total{route="/api/generate",kind="upstream_transport"} 1',
      'gateway_client_aborts_total{route="/api/generate"} 1',
      'gateway_response_bytes_total{route="/api/generate"} 1000',
      'gateway_request_duration_seconds_count{route="/api/generate"} 4',
      'gateway_request_duration_seconds_bucket{le="2.5",route="/api/generate"} 4',
      'gateway_request_duration_seconds_bucket{le="1",route="/api/generate"} 3',
      'gateway_queue_wait_seconds_count{route="/api/generate"} 4',
      'gateway_upstream_duration_seconds_count{route="/api/generate"} 2',
      "gateway_in_flight 2",
      "gateway_queued 5",
      "gateway_upstream_up 0",
    ]) {
      expect(body.split("\n")).toContain(line);
    }
    expect(body).toContain('gateway_request_duration_seconds_bucket{le="300",route="/api/generate"} 4');
    expect(body).toContain("process_cpu_user_seconds_total");
  });
});
