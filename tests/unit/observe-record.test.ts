import { beforeEach, describe, expect, it } from "vitest";
import { parseConfig } from "@/lib/config";
import { fail } from "@/lib/errors";
import { RequestRecord } from "@/lib/observe/request";
import { Registry, setRegistry } from "@/lib/registry";
import { ROUTES } from "@/lib/routes";
import type { RouteEntry } from "@/lib/routes";

// A real registry whose log lines are captured.
const lines: { level: string; line: Record<string, unknown> }[] = [];
let gateway: Registry;
function freshGateway(env: Record<string, string> = {}) {
  gateway = new Registry(parseConfig({ TEXT2IMAGE_SERVER_URL: "http://127.0.0.1:9", LOG_LEVEL: "debug", ...env }), {
    logTo: {
      write(text: string) {
        const line = JSON.parse(text) as Record<string, unknown>;
        lines.push({ level: String(line.level), line });
      },
    },
  });
  setRegistry(gateway);
}

/** The requests the registry's metrics counted, by route and status. */
async function counted(): Promise<string[]> {
  const body = await gateway.metrics.registry.metrics();
  return body.split("\n").filter((line) => line.startsWith("gateway_requests_total{"));
}

const params = { prompt: "a secret garden", negative_prompt: "", width: 512, height: 256, seed: -1, num_inference_steps: 7, guidance_scale: 0 };

function record(id?: string) {
  const headers: Record<string, string> = id ? { "x-request-id": id } : {};
  return new RequestRecord(ROUTES.generate, new Request("http://gateway/generate", { method: "POST", headers }));
}

beforeEach(() => {
  lines.length = 0;
  freshGateway();
});

describe("a request's record", () => {
  it("writes one line with the generate parameters, never the prompt by default", async () => {
    const r = record("req-1");
    r.generating(params);
    r.begin("queue")();
    const upstream = r.begin("upstream");
    await new Promise((resolve) => setTimeout(resolve, 20));
    upstream();
    r.sent(1234);
    r.responded(200);
    r.responded(200);
    expect(lines).toHaveLength(1);
    expect(lines[0]?.level).toBe("info");
    const line = lines[0]?.line;
    expect(line).toMatchObject({
      request_id: "req-1",
      route: "/api/generate",
      method: "POST",
      status: 200,
      bytes: 1234,
      width: 512,
      height: 256,
      steps: 7,
      prompt_length: params.prompt.length,
    });
    expect(line).not.toHaveProperty("error_kind");
    expect(line).not.toHaveProperty("prompt");
    expect(line?.upstream_ms).toBeGreaterThanOrEqual(15);
    expect(line?.duration_ms).toBeGreaterThanOrEqual(line?.upstream_ms as number);
    expect(line?.queue_wait_ms).toBeGreaterThanOrEqual(0);
    expect(await counted()).toEqual(['gateway_requests_total{route="/api/generate",status="200"} 1']);
  });

  it("logs the prompt with LOG_PROMPTS", () => {
    freshGateway({ LOG_PROMPTS: "true" });
    const r = record();
    r.generating(params);
    r.responded(200);
    expect(lines[0]?.line.prompt).toBe(params.prompt);
  });

  it("leaves out what did not happen: no queue, no upstream, no parameters", () => {
    const r = record();
    r.failed(fail.invalidBody());
    r.responded(400);
    const line = lines[0]?.line ?? {};
    expect(line.error_kind).toBe("invalid_body");
    expect(line.queue_wait_ms).toBeUndefined();
    expect(line.upstream_ms).toBeUndefined();
    expect("width" in line).toBe(false);
  });

  it("stays open while held, and finishes once the hold is released", () => {
    const r = record();
    const streaming = r.hold();
    r.sent(10);
    r.responded(200);
    expect(lines).toHaveLength(0);
    r.sent(20);
    r.failedWith("upstream_transport");
    streaming();
    streaming();
    expect(lines).toHaveLength(1);
    expect(lines[0]?.line).toMatchObject({ status: 200, bytes: 30, error_kind: "upstream_transport" });
  });

  it("logs 5xx at warn and unknown errors at error, with their cause", () => {
    const upstream = record();
    upstream.failed(fail.upstreamStatus(503, "Queue is full"));
    upstream.responded(503);
    const internal = record();
    const bug = new TypeError("x is undefined");
    internal.failed(bug);
    internal.responded(500);
    expect(lines.map((entry) => entry.level)).toEqual(["warn", "error"]);
    expect(lines[0]?.line.err).toBeUndefined();
    expect(lines[1]?.line).toMatchObject({ error_kind: "internal", err: { type: "TypeError", message: bug.message } });
  });

  it("logs the polled routes' successes at debug, their failures and every other route at info", async () => {
    const answer = (route: RouteEntry, method: string, status: number) => {
      new RequestRecord(route, new Request(`http://gateway${route.path}`, { method })).responded(status);
    };
    answer(ROUTES.health, "GET", 200);
    answer(ROUTES.gatewayMetrics, "GET", 200);
    answer(ROUTES.health, "POST", 405);
    answer(ROUTES.info, "GET", 200);
    expect(lines.map(({ level, line }) => [level, line.route, line.status])).toEqual([
      ["debug", "/api/health", 200],
      ["debug", "/api/metrics/gateway", 200],
      ["info", "/api/health", 405],
      ["info", "/api", 200],
    ]);
    expect(await counted()).toHaveLength(4);
  });

  it("gives the upstream client the request id, the queue wait and the caller's trace context", () => {
    const r = record("abc");
    expect(r.upstreamContext()).toEqual({ requestId: "abc", queueWaitMs: undefined, logPrompt: false, traceContext: {} });
    r.begin("queue")();
    expect(r.upstreamContext().queueWaitMs).toBeGreaterThanOrEqual(0);
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const traced = new Request("http://gateway/generate", { method: "POST", headers: { traceparent, tracestate: "a=b", baggage: "x=y" } });
    expect(new RequestRecord(ROUTES.generate, traced).upstreamContext().traceContext).toEqual({ traceparent, tracestate: "a=b" });
    const invalid = new Request("http://gateway/generate", { method: "POST", headers: { traceparent: "00-ab-cd-01", tracestate: "a=b" } });
    expect(new RequestRecord(ROUTES.generate, invalid).upstreamContext().traceContext).toEqual({});
  });
});
