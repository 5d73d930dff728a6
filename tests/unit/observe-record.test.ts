import { beforeEach, describe, expect, it, vi } from "vitest";

// The record's module is server-only; here it runs with its log and metrics captured.
vi.mock("server-only", () => ({}));
const lines: { level: string; line: Record<string, unknown> }[] = [];
const outcomes: unknown[] = [];
vi.mock("@/lib/observe/log", () => ({
  logger: () => ({
    isLevelEnabled: () => true,
    debug: (line: Record<string, unknown>) => lines.push({ level: "debug", line }),
    info: (line: Record<string, unknown>) => lines.push({ level: "info", line }),
    warn: (line: Record<string, unknown>) => lines.push({ level: "warn", line }),
    error: (line: Record<string, unknown>) => lines.push({ level: "error", line }),
  }),
}));
vi.mock("@/lib/observe/metrics", () => ({ recordRequest: (outcome: unknown) => outcomes.push(outcome) }));
const settings = { logPrompts: false };
vi.mock("@/lib/config", () => ({ config: () => settings }));

const { RequestRecord } = await import("@/lib/observe/request");
const { fail } = await import("@/lib/errors");

const params = { prompt: "a secret garden", negative_prompt: "", width: 512, height: 256, seed: -1, num_inference_steps: 7, guidance_scale: 0 };

function record(id?: string) {
  const headers: Record<string, string> = id ? { "x-request-id": id } : {};
  return new RequestRecord("/api/generate", new Request("http://gateway/generate", { method: "POST", headers }));
}

beforeEach(() => {
  lines.length = 0;
  outcomes.length = 0;
  settings.logPrompts = false;
});

describe("a request's record", () => {
  it("writes one line with the generate parameters, never the prompt by default", async () => {
    const r = record("req-1");
    r.generating(params);
    await r.measure("queue", () => Promise.resolve());
    await r.measure("upstream", () => new Promise((resolve) => setTimeout(resolve, 20)));
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
      error_kind: undefined,
      prompt: undefined,
    });
    expect(line?.upstream_ms).toBeGreaterThanOrEqual(15);
    expect(line?.duration_ms).toBeGreaterThanOrEqual(line?.upstream_ms as number);
    expect(line?.queue_wait_ms).toBeGreaterThanOrEqual(0);
    expect(outcomes).toEqual([expect.objectContaining({ route: "/api/generate", status: 200, bytes: 1234, errorKind: undefined })]);
  });

  it("logs the prompt with LOG_PROMPTS", () => {
    settings.logPrompts = true;
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
    expect(lines[1]?.line).toMatchObject({ error_kind: "internal", err: bug });
  });

  it("logs the polled routes' successes at debug, their failures and every other route at info", () => {
    const answer = (route: string, method: string, status: number) => {
      new RequestRecord(route, new Request(`http://gateway${route}`, { method })).responded(status);
    };
    answer("/api/health", "GET", 200);
    answer("/api/metrics/gateway", "GET", 200);
    answer("/api/health", "POST", 405);
    answer("/api", "GET", 200);
    expect(lines.map(({ level, line }) => [level, line.route, line.status])).toEqual([
      ["debug", "/api/health", 200],
      ["debug", "/api/metrics/gateway", 200],
      ["info", "/api/health", 405],
      ["info", "/api", 200],
    ]);
    expect(outcomes).toHaveLength(4);
  });

  it("gives the upstream client the request id, the queue wait and the caller's trace context", async () => {
    const r = record("abc");
    expect(r.upstreamContext()).toEqual({ requestId: "abc", queueWaitMs: undefined, logPrompt: false, traceContext: {} });
    await r.measure("queue", () => Promise.resolve());
    expect(r.upstreamContext().queueWaitMs).toBeGreaterThanOrEqual(0);
    const traced = new Request("http://gateway/generate", { method: "POST", headers: { traceparent: "00-ab-cd-01", tracestate: "a=b", baggage: "x=y" } });
    expect(new RequestRecord("/api/generate", traced).upstreamContext().traceContext).toEqual({ traceparent: "00-ab-cd-01", tracestate: "a=b" });
  });
});
