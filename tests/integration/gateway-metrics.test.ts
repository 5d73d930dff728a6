import { afterAll, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { call, eventually, postJson } from "./harness";
import type { Gateway } from "./harness";

const small = { prompt: "a tin robot", width: 256, height: 256, num_inference_steps: 6 };
const BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "20", "30", "60", "120", "300", "+Inf"];

let emulator: Emulator;
let gateway: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  emulator = await startEmulator({ stepMs: 5, slots: 4 });
  // One slot and a queue of one: the third request at once is a queue-full rejection.
  gateway = await startFileGateway({
    TEXT2IMAGE_SERVER_URL: emulator.url,
    MAX_CONCURRENT_REQUESTS: "1",
    MAX_QUEUE: "1",
    QUEUE_TIMEOUT: "20",
    LOG_LEVEL: "silent",
  });
});

afterAll(() => emulator.close());

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format (the subset prom-client writes). */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key as string] = value as string;
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) });
  }
  return samples;
}

async function scrape() {
  const response = await fetch(`${gateway.url}/api/metrics/gateway`);
  const text = await response.text();
  const samples = parse(text);
  /** The one sample with exactly these labels; undefined when there is none. */
  const value = (name: string, labels: Record<string, string> = {}) =>
    samples.find((sample) => sample.name === name && sameLabels(sample.labels, labels))?.value;
  return { response, text, samples, value };
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
}

async function load() {
  return (await call(`${gateway.url}/api/health`)).body as { in_flight: number; queued: number };
}

const bodyBytes = (answer: { body: unknown }) => Buffer.byteLength(JSON.stringify(answer.body));

describe("GET /api/metrics/gateway", () => {
  it("counts a known mix of requests exactly", async () => {
    const generate = `${gateway.url}/api/generate`;
    // 3 successes in the end: two now (one through the original gateway's path, which counts as /api/generate) ...
    const first = await postJson(generate, small);
    const second = await postJson(`${gateway.url}/generate`, small);
    // ... 2 validation errors, 1 upstream 500 ...
    const invalid = await Promise.all([postJson(generate, { prompt: "" }), postJson(generate, { ...small, width: 9999 })]);
    const failed = await postJson(generate, { ...small, prompt: "boom [[fault:status:500]]" });
    expect([first.status, second.status, ...invalid.map((answer) => answer.status), failed.status]).toEqual([200, 200, 422, 422, 500]);

    // ... then one request runs slowly, one waits, one finds the queue full,
    // and the running one's client gives up, which lets the waiting one (the third success) through.
    emulator.setStepMs(500);
    const client = new AbortController();
    const running = fetch(generate, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(small),
      signal: client.signal,
    }).catch(() => "aborted");
    expect(await eventually(() => emulator.stats().active === 1)).toBe(true);
    const waiting = postJson(generate, small);
    expect(await eventually(async () => (await load()).queued === 1)).toBe(true);
    const rejected = await postJson(generate, small);
    expect(rejected.status).toBe(503);
    emulator.setStepMs(5);
    client.abort();
    expect(await running).toBe("aborted");
    const third = await waiting;
    expect(third.status).toBe(200);

    const route = { route: "/api/generate" };
    // The aborted request is recorded once the gateway has seen the client go.
    expect(await eventually(async () => (await scrape()).value("gateway_client_aborts_total", route) === 1)).toBe(true);
    const { response, value } = await scrape();
    expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);

    const requests = (status: string) => value("gateway_requests_total", { ...route, status });
    expect([requests("200"), requests("422"), requests("500"), requests("503"), requests("499")]).toEqual([3, 2, 1, 1, 1]);
    expect(value("gateway_upstream_errors_total", { ...route, kind: "upstream_status" })).toBe(1);
    expect(value("gateway_rejections_total", { reason: "queue_full" })).toBe(1);
    expect(value("gateway_rejections_total", { reason: "queue_timeout" })).toBe(0);
    expect(value("gateway_rejections_total", { reason: "rate_limited" })).toBe(0);
    expect(value("gateway_client_aborts_total", route)).toBe(1);
    expect(value("gateway_response_bytes_total", route)).toBe(bodyBytes(first) + bodyBytes(second) + bodyBytes(third));

    // Every request has a total; the 6 past validation asked for a slot; the 5 admitted went upstream.
    expect(value("gateway_request_duration_seconds_count", route)).toBe(8);
    expect(value("gateway_queue_wait_seconds_count", route)).toBe(6);
    expect(value("gateway_upstream_duration_seconds_count", route)).toBe(5);
    // The slow request waited about a step before its client left, and the waiting one at least that long.
    expect(value("gateway_queue_wait_seconds_bucket", { ...route, le: "0.005" })).toBeLessThan(6);
    expect(value("gateway_upstream_duration_seconds_sum", route)).toBeGreaterThan(0);
  });

  it("has every histogram bucket from 5 ms to 300 s, cumulative up to the count", async () => {
    const { value } = await scrape();
    for (const histogram of ["gateway_request_duration_seconds", "gateway_queue_wait_seconds", "gateway_upstream_duration_seconds"]) {
      const counts = BUCKETS.map((le) => value(`${histogram}_bucket`, { route: "/api/generate", le }));
      expect(counts.every((count) => count !== undefined), histogram).toBe(true);
      expect(counts, histogram).toEqual([...counts].sort((a, b) => (a ?? 0) - (b ?? 0)));
      expect(counts.at(-1), histogram).toBe(value(`${histogram}_count`, { route: "/api/generate" }));
    }
  });

  it("counts the bytes a stream relays and times the stream to its end", async () => {
    emulator.setStepMs(50);
    const response = await fetch(`${gateway.url}/api/generate-stream`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(small),
    });
    const received = (await response.arrayBuffer()).byteLength;
    emulator.setStepMs(5);
    const route = { route: "/api/generate-stream" };
    expect(await eventually(async () => (await scrape()).value("gateway_requests_total", { ...route, status: "200" }) === 1)).toBe(true);
    const { value } = await scrape();
    expect(value("gateway_response_bytes_total", route)).toBe(received);
    expect(value("gateway_request_duration_seconds_count", route)).toBe(1);
    expect(value("gateway_upstream_duration_seconds_count", route)).toBe(1);
    // Six steps of 50 ms: the stream's time is its whole length, not the time to its first byte.
    expect(value("gateway_upstream_duration_seconds_sum", route)).toBeGreaterThan(0.25);
    expect(value("gateway_request_duration_seconds_bucket", { ...route, le: "0.25" })).toBe(0);
  });

  it("reads the load gauges at scrape time and includes Node's default metrics", async () => {
    const { value, text } = await scrape();
    expect(value("gateway_in_flight")).toBe(0);
    expect(value("gateway_queued")).toBe(0);
    expect(text).toContain("process_cpu_user_seconds_total");
    expect(text).toContain("nodejs_eventloop_lag_seconds");

    emulator.setStepMs(300);
    const pending = [postJson(`${gateway.url}/api/generate`, small), postJson(`${gateway.url}/api/generate`, small)];
    expect(await eventually(async () => (await load()).queued === 1)).toBe(true);
    const busy = await scrape();
    expect([busy.value("gateway_in_flight"), busy.value("gateway_queued")]).toEqual([1, 1]);
    emulator.setStepMs(5);
    await Promise.all(pending);
  });

  it("reports the GPU server up or down from its latest health answer", async () => {
    expect((await scrape()).value("gateway_upstream_up")).toBe(1);
    emulator.setFault({ kind: "status", status: 503, target: "health" });
    try {
      // One health answer serves for a second.
      expect(await eventually(async () => (await scrape()).value("gateway_upstream_up") === 0, 3000)).toBe(true);
    } finally {
      emulator.setFault(null);
    }
    expect(await eventually(async () => (await scrape()).value("gateway_upstream_up") === 1, 3000)).toBe(true);
  });
});
