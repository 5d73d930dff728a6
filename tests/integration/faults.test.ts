/**
 * Every way the GPU server or the client can fail, in one table: for each, the
 * status and `detail` (or the stream's final event), then the shared end
 * state — no slot held, nothing queued, no upstream connection left open, and
 * the gateway still serving.
 */
import { afterAll, beforeEach, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator, Fault } from "../../emulator/server";
import { it } from "./fixtures";
import {
  call,
  eventually,
  expectCleanOutput,
  expectIdleAndServing,
  freePort,
  gatewayLoad,
  postJson,
  streamGenerate,
} from "./harness";
import type { Gateway } from "./harness";

const REQUEST_TIMEOUT_S = 2;
const REQUEST_TIMEOUT_MS = REQUEST_TIMEOUT_S * 1000;
const MAX_RESPONSE_BYTES = 200_000;
const MAX_CONCURRENT = 2;
const STEPS = 6;
const STEP_MS = 1;
const small = { prompt: "a lighthouse", width: 256, height: 256, num_inference_steps: STEPS };

const LOST = "Connection to the text-to-image server was lost";
const TIMED_OUT = `Text-to-image server did not answer within ${REQUEST_TIMEOUT_S} s (REQUEST_TIMEOUT)`;
const TOO_LARGE = `Text-to-image server response is larger than ${MAX_RESPONSE_BYTES} bytes (MAX_RESPONSE_BYTES)`;
const invalid = (reason: string) => `Text-to-image server sent an invalid response: ${reason}`;

let emulator: Emulator;
let gateway: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  // The emulator has room for more than the gateway sends: only the gateway queues.
  // A server that stops on a closed connection (ComfyUI-like); the genuine kind is tests/integration/genuine-server.test.ts's.
  emulator = await startEmulator({ stepMs: STEP_MS, slots: 8, onDisconnect: "stop" });
  gateway = await startFileGateway({
    TEXT2IMAGE_SERVER_URL: emulator.url,
    REQUEST_TIMEOUT: String(REQUEST_TIMEOUT_S),
    MAX_RESPONSE_BYTES: String(MAX_RESPONSE_BYTES),
    MAX_CONCURRENT_REQUESTS: String(MAX_CONCURRENT),
  });
});

afterAll(() => emulator.close());

beforeEach(() => {
  emulator.reset();
  emulator.setStepMs(STEP_MS);
});

/** A JSON error with its status, or a 200 event stream that ends with this `error` event. */
type Outcome = { status: number; detail: string } | { event: string };

interface FaultCase {
  fault: Fault;
  /** Slower steps instead of (or beside) a fault. */
  stepMs?: number;
  /** What /api/generate answers; absent when the fault only concerns streams. */
  generate?: Outcome;
  stream: Outcome;
  /** A timeout: the answer comes at REQUEST_TIMEOUT, not before or much after, and the gateway hangs up on the GPU server. */
  timeout?: boolean;
}

const REFUSED_CREDENTIALS = (status: number) =>
  `Text-to-image server refused the gateway's credentials (HTTP ${status}): check TEXT2IMAGE_SERVER_TOKEN and the credentials in TEXT2IMAGE_SERVER_URL`;

const FAULTS: Record<string, FaultCase> = {
  // The client cannot fix the gateway's own credentials: a 502, never the server's 401 or 403 (with no WWW-Authenticate).
  "upstream 401": {
    fault: { kind: "status", status: 401, detail: "Invalid token" },
    generate: { status: 502, detail: REFUSED_CREDENTIALS(401) },
    stream: { status: 502, detail: REFUSED_CREDENTIALS(401) },
  },
  "upstream 403": {
    fault: { kind: "status", status: 403, detail: "Forbidden" },
    generate: { status: 502, detail: REFUSED_CREDENTIALS(403) },
    stream: { status: 502, detail: REFUSED_CREDENTIALS(403) },
  },
  "upstream 429": {
    fault: { kind: "status", status: 429, detail: "slow down" },
    generate: { status: 429, detail: "Text-to-image server error: slow down" },
    stream: { status: 429, detail: "Text-to-image server error: slow down" },
  },
  "upstream 500": {
    fault: { kind: "status", status: 500, detail: "CUDA error" },
    generate: { status: 500, detail: "Text-to-image server error: CUDA error" },
    stream: { status: 500, detail: "Text-to-image server error: CUDA error" },
  },
  "upstream 503 (its detail kept)": {
    fault: { kind: "status", status: 503, detail: "Queue is full" },
    generate: { status: 503, detail: "Queue is full" },
    stream: { status: 503, detail: "Queue is full" },
  },
  "upstream 504 (its detail kept)": {
    fault: { kind: "status", status: 504, detail: "Generation timed out" },
    generate: { status: 504, detail: "Generation timed out" },
    stream: { status: 504, detail: "Generation timed out" },
  },
  "a reset before headers": {
    fault: { kind: "reset_before_headers" },
    generate: { status: 502, detail: LOST },
    stream: { status: 502, detail: LOST },
  },
  "a reset mid-body (the stream's complete event cut short)": {
    fault: { kind: "reset_mid_body" },
    generate: { status: 502, detail: LOST },
    stream: { event: LOST },
  },
  "headers slower than REQUEST_TIMEOUT": {
    fault: { kind: "stall_headers" },
    generate: { status: 504, detail: TIMED_OUT },
    stream: { status: 504, detail: TIMED_OUT },
    timeout: true,
  },
  "a body that stalls": {
    fault: { kind: "stall_body" },
    generate: { status: 504, detail: TIMED_OUT },
    stream: { event: TIMED_OUT },
    timeout: true,
  },
  "a generation (a stream of progress) longer than REQUEST_TIMEOUT": {
    fault: { kind: "none" },
    stepMs: 500, // 6 steps: 3 s against a 2 s limit
    generate: { status: 504, detail: TIMED_OUT },
    stream: { event: TIMED_OUT },
    timeout: true,
  },
  "malformed JSON": {
    fault: { kind: "malformed_json" },
    generate: { status: 502, detail: invalid("body is not JSON") },
    stream: { event: invalid("an event is not JSON") },
  },
  "JSON without image_base64": {
    fault: { kind: "missing_image" },
    generate: { status: 502, detail: invalid("no image_base64 in the answer") },
    stream: { event: invalid("the complete event has no image") },
  },
  "an answer over MAX_RESPONSE_BYTES": {
    fault: { kind: "oversize", bytes: MAX_RESPONSE_BYTES * 3 },
    generate: { status: 502, detail: TOO_LARGE },
    stream: { event: TOO_LARGE },
  },
  "an SSE stream cut mid-way": {
    fault: { kind: "stream_cut" },
    stream: { event: LOST },
  },
  "a malformed SSE event": {
    fault: { kind: "stream_malformed" },
    stream: { event: invalid("an event is not JSON") },
  },
};

const rows = Object.entries(FAULTS).flatMap(([name, fault]) => [
  ...(fault.generate ? [{ name, endpoint: "/api/generate" as const, fault, expected: fault.generate }] : []),
  { name, endpoint: "/api/generate-stream" as const, fault, expected: fault.stream },
]);

describe("each upstream fault maps through the error table and leaves the gateway idle and serving", () => {
  it.each(rows)("$name on $endpoint", async ({ endpoint, fault, expected }) => {
    emulator.setFault(fault.fault);
    if (fault.stepMs !== undefined) emulator.setStepMs(fault.stepMs);
    const startedAt = performance.now();

    if (endpoint === "/api/generate") {
      const answer = await postJson(`${gateway.url}${endpoint}`, small);
      expect(answer.headers.get("content-type")).toMatch(/^application\/json/);
      expect(answer).toMatchObject({ status: (expected as { status: number }).status, body: { detail: (expected as { detail: string }).detail } });
    } else {
      const { response, json, events, types } = await streamGenerate(`${gateway.url}${endpoint}`, small);
      if ("event" in expected) {
        expect(response.status).toBe(200);
        expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
        // What came before the failure is the GPU server's progress, relayed; the end is one error event.
        expect(types.slice(0, -1).every((type) => type === "progress" || type === "queued")).toBe(true);
        expect(events.at(-1)?.data).toEqual({ type: "error", kind: expect.stringMatching(/^upstream_[a-z_]+$/) as unknown, message: expected.event });
      } else {
        // Nothing was sent yet: a plain JSON error with its status.
        expect(response.headers.get("content-type")).toMatch(/^application\/json/);
        expect({ status: response.status, json }).toMatchObject({ status: expected.status, json: { detail: expected.detail } });
      }
    }

    const elapsed = performance.now() - startedAt;
    if (fault.timeout) {
      expect(elapsed).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 50);
      expect(elapsed).toBeLessThan(REQUEST_TIMEOUT_MS + 3000);
      // The gateway hung up on the GPU server: it does not keep working for nobody.
      expect(await eventually(() => emulator.stats().aborted === 1)).toBe(true);
    }
    emulator.setFault(null);
    emulator.setStepMs(STEP_MS);
    await expectIdleAndServing(gateway, { emulator });
  });
});

describe("a GPU server that cannot be reached", () => {
  it.for([
    ["a refused connection", async () => `http://127.0.0.1:${await freePort()}`, "connection refused"],
    ["a DNS failure", () => Promise.resolve("http://gpu-box.invalid:8001"), "host name not found"],
  ] as const)("%s answers 503 naming the server on both endpoints, reports degraded health, and keeps serving", async ([, serverUrl, reason], { startGateway }) => {
    const url = await serverUrl();
    const target = await startGateway({ TEXT2IMAGE_SERVER_URL: url });
    const detail = `Text-to-image server ${url} is unreachable: ${reason}`;
    const expectUnreachable = async () => {
      const plain = await postJson(`${target.url}/api/generate`, small);
      expect(plain).toMatchObject({ status: 503, body: { detail } });
      const stream = await streamGenerate(`${target.url}/api/generate-stream`, small);
      expect({ status: stream.response.status, json: stream.json }).toMatchObject({ status: 503, json: { detail } });
    };
    await expectUnreachable();
    const health = await call(`${target.url}/api/health`);
    expect(health).toMatchObject({ status: 200, body: { status: "degraded", gateway: "running", text2image_server: { status: "unreachable" } } });
    const metrics = await call(`${target.url}/api/metrics`);
    expect(metrics.status).toBe(502);
    expect((metrics.body as { detail: string }).detail).toContain(reason);
    // Serving, for a down GPU server, means the same clear answer every time.
    await expectIdleAndServing(target, { probe: expectUnreachable });
    expectCleanOutput(target);
  });
});

/** A request the test can cut off, as a browser tab that closes would. */
function openRequest(path: string, body: unknown = small) {
  const client = new AbortController();
  const response = fetch(`${gateway.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: client.signal,
  });
  return { client, response };
}

/** Fills every gateway slot with a generation of STEPS steps of `stepMs`; resolves once all run on the GPU server. */
async function fillSlots(stepMs: number) {
  emulator.setStepMs(stepMs);
  const running = Array.from({ length: MAX_CONCURRENT }, () => postJson(`${gateway.url}/api/generate`, small));
  expect(await eventually(() => emulator.stats().active === MAX_CONCURRENT)).toBe(true);
  let settled = false;
  const done = Promise.all(running).then((answers) => {
    settled = true;
    return answers;
  });
  return { done, settled: () => settled };
}

describe("a client that disconnects", () => {
  it.each([["/api/generate"], ["/generate"]])("while generating on %s aborts the upstream generation at once and frees the slot", async (path) => {
    emulator.setStepMs(1000); // 6 s of generation: only the client's abort can end it this soon
    const requests = Array.from({ length: MAX_CONCURRENT }, () => openRequest(path));
    const pending = requests.map(({ response }) => response.then(() => "answered", () => "aborted"));
    expect(await eventually(() => emulator.stats().active === MAX_CONCURRENT)).toBe(true);
    const abortedAt = performance.now();
    for (const { client } of requests) client.abort();
    expect(await Promise.all(pending)).toEqual(Array<string>(MAX_CONCURRENT).fill("aborted"));
    expect(await eventually(() => emulator.stats().aborted === MAX_CONCURRENT, 1000)).toBe(true);
    // Well before REQUEST_TIMEOUT would have closed it.
    expect(performance.now() - abortedAt).toBeLessThan(1000);
    emulator.setStepMs(STEP_MS);
    await expectIdleAndServing(gateway, { emulator });
  });

  it("while queued for /api/generate leaves the queue at once and never reaches the GPU", async () => {
    const slots = await fillSlots(250); // 1.5 s each, within REQUEST_TIMEOUT
    const { client, response } = openRequest("/api/generate");
    const queued = response.then(() => "answered", () => "aborted");
    expect(await eventually(async () => (await gatewayLoad(gateway.url)).queued === 1)).toBe(true);
    client.abort();
    expect(await queued).toBe("aborted");
    expect(await eventually(async () => (await gatewayLoad(gateway.url)).queued === 0, 1000)).toBe(true);
    expect(slots.settled(), "the queue emptied by the abort, not by a free slot").toBe(false);
    expect((await slots.done).map((answer) => answer.status)).toEqual(Array<number>(MAX_CONCURRENT).fill(200));
    expect(emulator.stats().generateRequests).toBe(MAX_CONCURRENT);
    emulator.setStepMs(STEP_MS);
    await expectIdleAndServing(gateway, { emulator });
  });

  it.each([["/api/generate-stream"], ["/generate-stream"]])("while streaming from %s aborts the upstream stream at once and frees the slot", async (path) => {
    emulator.setStepMs(200);
    const sentAt = performance.now();
    const { client, response } = openRequest(path);
    const reader = (await response).body?.getReader();
    const first = await reader?.read(); // the first event: the GPU is working
    expect(new TextDecoder().decode(first?.value)).toContain('"type": "queued"'); // the GPU server's first event
    client.abort();
    const abortedAt = performance.now();
    expect(await eventually(() => emulator.stats().aborted === 1, 1000)).toBe(true);
    expect(performance.now() - abortedAt).toBeLessThan(1000);
    expect(performance.now() - sentAt).toBeLessThan(STEPS * 200);
    emulator.setStepMs(STEP_MS);
    await expectIdleAndServing(gateway, { emulator });
  });

  it("while queued for /api/generate-stream leaves the queue and never reaches the GPU", async () => {
    const slots = await fillSlots(250);
    const { client, response } = openRequest("/api/generate-stream");
    const reader = (await response).body?.getReader();
    const firstEvent = new TextDecoder().decode((await reader?.read())?.value);
    expect(firstEvent).toContain('"type":"queued"');
    client.abort();
    expect(await eventually(async () => (await gatewayLoad(gateway.url)).queued === 0, 1000)).toBe(true);
    expect(slots.settled(), "the queue emptied by the abort, not by a free slot").toBe(false);
    await slots.done;
    expect(emulator.stats().generateRequests).toBe(MAX_CONCURRENT);
    emulator.setStepMs(STEP_MS);
    await expectIdleAndServing(gateway, { emulator });
  });
});

describe("after every fault above", () => {
  it("the server never crashed, rejected unhandled or printed a stack", () => {
    expectCleanOutput(gateway);
    expect(gateway.process.exitCode).toBeNull();
  });
});
