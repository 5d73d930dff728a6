import { afterAll, beforeEach, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { call, eventually, postJson } from "./harness";
import type { Gateway, JsonAnswer } from "./harness";

const MAX_BODY_BYTES = 4096;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
// A word that appears nowhere but in the prompts sent.
const SECRET = "zanzibarquokka";
const small = { prompt: `${SECRET} on a pier`, width: 320, height: 256, num_inference_steps: 6 };

let emulator: Emulator;
let gateway: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  emulator = await startEmulator({ stepMs: 2 });
  gateway = await startFileGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, MAX_BODY_BYTES: String(MAX_BODY_BYTES) });
});

afterAll(() => emulator.close());

beforeEach(() => {
  emulator.reset();
  emulator.setStepMs(2);
});

type LogLine = Record<string, unknown>;

/** The request lines the gateway printed: one JSON object per line, among Next's own plain-text lines. */
function requestLines(of: Gateway = gateway): LogLine[] {
  return of
    .output()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as LogLine)
    .filter((line) => "request_id" in line);
}

/** The one line for a request id, once it is written. */
async function lineFor(id: string, of: Gateway = gateway): Promise<LogLine> {
  expect(await eventually(() => requestLines(of).some((line) => line.request_id === id))).toBe(true);
  const lines = requestLines(of).filter((line) => line.request_id === id);
  expect(lines).toHaveLength(1);
  return lines[0] as LogLine;
}

const withId = (id: string, init: RequestInit = {}): RequestInit => ({
  ...init,
  headers: { "content-type": "application/json", "x-request-id": id, ...(init.headers as Record<string, string> | undefined) },
});

const requestIdOf = (answer: JsonAnswer) => answer.headers.get("x-request-id");

function postStream(body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(`${gateway.url}/api/generate-stream`, { method: "POST", body: JSON.stringify(body), ...withId(crypto.randomUUID(), init) });
}

describe("the request log", () => {
  it("writes one line per generation, and carries the caller's request id to the GPU server and back", async () => {
    const id = "req-logs.0001";
    const answer = await postJson(`${gateway.url}/api/generate`, small, withId(id));
    expect(answer.status).toBe(200);
    expect(requestIdOf(answer)).toBe(id);
    expect(emulator.stats().lastHeaders.at(-1)?.["x-request-id"]).toBe(id);

    const line = await lineFor(id);
    expect(line).toMatchObject({
      level: "info",
      request_id: id,
      route: "/api/generate",
      method: "POST",
      status: 200,
      bytes: Buffer.byteLength(JSON.stringify(answer.body)),
      width: 320,
      height: 256,
      steps: 6,
      prompt_length: small.prompt.length,
    });
    expect(line.duration_ms).toEqual(expect.any(Number));
    expect(line.queue_wait_ms).toEqual(expect.any(Number));
    expect(line.upstream_ms).toBeGreaterThan(0);
    expect(line.upstream_ms).toBeLessThanOrEqual(line.duration_ms as number);
    expect(line).not.toHaveProperty("error_kind");
    expect(line).not.toHaveProperty("prompt");
  });

  it("labels an original gateway path with the route it lands on", async () => {
    const answer = await postJson(`${gateway.url}/generate`, small, withId("seed-path-1"));
    expect(answer.status).toBe(200);
    expect(await lineFor("seed-path-1")).toMatchObject({ route: "/api/generate", status: 200 });
  });

  it("gives a request without an id a new one, in the answer, the error body and the line", async () => {
    const answer = await postJson(`${gateway.url}/api/generate`, { prompt: "" });
    const id = requestIdOf(answer) ?? "";
    expect(id).toMatch(UUID);
    expect(answer.status).toBe(422);
    expect(answer.body).toMatchObject({ detail: [expect.objectContaining({ loc: ["body", "prompt"] })], request_id: id });
    const line = await lineFor(id);
    expect(line).toMatchObject({ status: 422, error_kind: "validation_failed", bytes: 0, route: "/api/generate" });
    // Nothing was admitted or sent upstream, and an invalid request has no parameters to log.
    for (const field of ["queue_wait_ms", "upstream_ms", "width", "prompt_length"]) expect(line).not.toHaveProperty(field);
  });

  it.each([
    ["too long", "x".repeat(129)],
    ["not a token", "two words"],
    ["a log injection", 'a","status":200,"b":"'],
  ])("replaces an incoming id that is %s", async (_name, given) => {
    const answer = await postJson(`${gateway.url}/api/generate`, { prompt: "" }, withId(given));
    const id = requestIdOf(answer) ?? "";
    expect(id).toMatch(UUID);
    expect((answer.body as { request_id: string }).request_id).toBe(id);
    await lineFor(id);
    expect(gateway.output()).not.toContain(given);
  });

  it("logs an upstream 503 at warn with its kind", async () => {
    const answer = await postJson(`${gateway.url}/api/generate`, { ...small, prompt: "busy [[fault:status:503]]" }, withId("upstream-503"));
    expect(answer).toMatchObject({ status: 503, body: { detail: "Service Unavailable", request_id: "upstream-503" } });
    expect(emulator.stats().lastHeaders.at(-1)?.["x-request-id"]).toBe("upstream-503");
    const line = await lineFor("upstream-503");
    expect(line).toMatchObject({ level: "warn", status: 503, error_kind: "upstream_status", bytes: 0, width: 320 });
    expect(line.upstream_ms).toEqual(expect.any(Number));
  });

  it("writes a stream's line when the stream ends, with the bytes relayed", async () => {
    emulator.setStepMs(100); // six steps: about 600 ms of stream after the headers
    const id = "stream-0001";
    const response = await postStream(small, withId(id));
    expect(response.status).toBe(200);
    expect(response.headers.get("x-request-id")).toBe(id);
    expect(emulator.stats().lastHeaders.at(-1)?.["x-request-id"]).toBe(id);
    // The headers are out, the stream is not done: no line yet.
    expect(gateway.output()).not.toContain(id);

    const received = (await response.arrayBuffer()).byteLength;
    const line = await lineFor(id);
    expect(line).toMatchObject({ route: "/api/generate-stream", method: "POST", status: 200, bytes: received, steps: 6 });
    expect(line).not.toHaveProperty("error_kind");
    expect(line.duration_ms).toBeGreaterThanOrEqual(500);
    expect(line.upstream_ms).toBeGreaterThanOrEqual(500);
  });

  it("logs the kind of failure a stream ended with", async () => {
    const id = "stream-cut-1";
    const response = await postStream({ ...small, prompt: "cut [[fault:stream_cut]]" }, withId(id));
    const text = await response.text();
    expect(text).toContain('"type":"error"');
    expect(await lineFor(id)).toMatchObject({ status: 200, error_kind: "upstream_transport", bytes: expect.any(Number) as unknown });
  });

  it("logs a client that leaves a stream as client_closed", async () => {
    emulator.setStepMs(200);
    const id = "stream-gone-1";
    const client = new AbortController();
    const response = await postStream(small, withId(id, { signal: client.signal }));
    const reader = response.body?.getReader();
    await reader?.read(); // the first progress event
    client.abort();
    expect(await lineFor(id)).toMatchObject({ status: 200, error_kind: "client_closed" });
    expect(await eventually(() => emulator.stats().aborted === 1)).toBe(true);
  });
});

describe("every error response", () => {
  const generate = () => `${gateway.url}/api/generate`;
  const json = { "content-type": "application/json" };
  it.each<[number, string, () => Promise<JsonAnswer>]>([
    [400, "malformed JSON", () => call(generate(), { method: "POST", headers: json, body: '{"prompt":' })],
    [404, "an unknown path", () => call(`${gateway.url}/api/nothing`)],
    [405, "a wrong method", () => call(generate(), { method: "GET" })],
    [413, "a body over MAX_BODY_BYTES", () => postJson(generate(), { prompt: "x".repeat(MAX_BODY_BYTES) })],
    [415, "a body that is not JSON", () => call(generate(), { method: "POST", headers: { "content-type": "text/plain" }, body: "a cat" })],
    [422, "an invalid field", () => postJson(generate(), { prompt: "x", width: 1 })],
    [503, "an upstream 503", () => postJson(generate(), { ...small, prompt: "[[fault:status:503]]" })],
    [504, "an upstream 504", () => postJson(generate(), { ...small, prompt: "[[fault:status:504]]" })],
  ])("%i (%s) carries the request id in its header and beside its detail", async (status, _name, send) => {
    const answer = await send();
    expect(answer.status).toBe(status);
    const id = requestIdOf(answer) ?? "";
    expect(id).toMatch(UUID);
    const body = answer.body as { detail: unknown; request_id: unknown };
    expect(Object.keys(body)).toEqual(["detail", "request_id"]);
    expect(body.request_id).toBe(id);
    expect(await lineFor(id)).toMatchObject({ status, error_kind: expect.any(String) as unknown });
  });

  it("keeps the caller's id in a rejection", async () => {
    const answer = await call(generate(), { method: "DELETE", headers: { "x-request-id": "mine-42" } });
    expect(answer).toMatchObject({ status: 405, body: { request_id: "mine-42" } });
    expect(requestIdOf(answer)).toBe("mine-42");
  });
});

describe("what the log leaves out", () => {
  it("leaves the health checks and Prometheus scrapes that succeed to debug, and still counts them", async () => {
    await call(`${gateway.url}/api/health`, { headers: { "x-request-id": "probe-ok" } });
    await call(`${gateway.url}/health`, { headers: { "x-request-id": "probe-seed" } });
    await call(`${gateway.url}/api/metrics/gateway`, { headers: { "x-request-id": "scrape-ok" } });
    const refused = await call(`${gateway.url}/api/health`, { method: "POST", headers: { "x-request-id": "probe-405" } });
    expect(refused.status).toBe(405);
    expect(await lineFor("probe-405")).toMatchObject({ route: "/api/health", status: 405, level: "info" });
    expect(requestLines().filter((line) => ["probe-ok", "probe-seed", "scrape-ok"].includes(String(line.request_id)))).toEqual([]);
    const scrape = await call(`${gateway.url}/api/metrics/gateway`);
    expect(String(scrape.body)).toMatch(/gateway_requests_total\{route="\/api\/health",status="200"\} [1-9]/);
  });

  it("never holds an image or, by default, a prompt", async () => {
    const plain = await postJson(`${gateway.url}/api/generate`, small, withId("private-1"));
    const stream = await postStream(small, withId("private-2"));
    const streamed = await stream.text();
    expect(JSON.stringify(plain.body)).toContain("data:image/jpeg;base64,");
    expect(streamed).toContain("data:image/jpeg;base64,");
    await lineFor("private-1");
    await lineFor("private-2");
    const output = gateway.output();
    expect(output).not.toContain(SECRET);
    expect(output).not.toContain("base64");
    expect(output).not.toContain("iVBORw0KGgo"); // the start of every PNG in base64
  });
});

describe("LOG_PROMPTS and LOG_LEVEL", () => {
  it("logs the prompt when asked, and only lines at LOG_LEVEL or above", async ({ startGateway }) => {
    const verbose = await startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, LOG_PROMPTS: "true", LOG_LEVEL: "warn" });
    const ok = await postJson(`${verbose.url}/api/generate`, small, withId("verbose-ok"));
    const prompt = `${SECRET} [[fault:status:500]]`;
    const failed = await postJson(`${verbose.url}/api/generate`, { ...small, prompt }, withId("verbose-500"));
    expect([ok.status, failed.status]).toEqual([200, 500]);
    expect(await lineFor("verbose-500", verbose)).toMatchObject({ level: "warn", status: 500, prompt, prompt_length: prompt.length });
    // A success is an info line: below warn, not written (nor is the start-up probe's).
    expect(requestLines(verbose).map((line) => line.request_id)).toEqual(["verbose-500"]);
    expect(verbose.output()).not.toContain("base64");
  });
});
