/**
 * Graceful shutdown of the built gateway under `next start`: SIGTERM or
 * SIGINT drains (503 for anything new, in-flight work finishes within
 * SHUTDOWN_GRACE, then is aborted) and the process exits 0, where Next's own
 * handler would refuse new connections and exit 143.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { startRedisServer } from "../redis-server";
import { it as gatewayIt } from "./fixtures";
import { call, eventually, postJson, signalGateway, streamGenerate } from "./harness";
import type { Gateway } from "./harness";

const STEPS = 6;
const small = { prompt: "a lighthouse at dusk", width: 256, height: 256, num_inference_steps: STEPS };
const SHUTTING_DOWN = "Gateway is shutting down";

let emulator: Emulator;

beforeAll(async () => {
  emulator = await startEmulator({ stepMs: 250, slots: 4 });
});

afterAll(async () => {
  await emulator.close();
});

beforeEach(() => {
  emulator.reset();
  emulator.setStepMs(250); // 6 steps: 1.5 s per image
});

/** `start`: a gateway in front of the emulator, with one slot unless `env` says otherwise; it stops when the test ends. */
const it = gatewayIt.extend("start", ({ startGateway }) => (env: Record<string, string> = {}) => startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, MAX_CONCURRENT_REQUESTS: "1", ...env }));

async function health(url: string) {
  return (await call(`${url}/api/health`)).body as { status: string; queued: number; shutting_down?: boolean };
}

/** The signal is handled asynchronously: the drain has begun once the gateway logs it. */
function draining(server: Gateway): Promise<boolean> {
  return eventually(() => server.output().includes('"msg":"shutting down: draining"'));
}

function expectShutdown503(answer: { status: number; headers: Headers; body: unknown }): void {
  expect(answer.status).toBe(503);
  expect(answer.body).toMatchObject({ detail: SHUTTING_DOWN });
  expect(answer.headers.get("connection")).toBe("close");
  expect(answer.headers.get("retry-after")).toMatch(/^\d+$/);
}

function finishedAt<T>(promise: Promise<T>): Promise<[T, number]> {
  return promise.then((value) => [value, performance.now()]);
}

/** The gateway's last log line: how the drain ended and how long it took, signal to exit. */
function shutdownLine(server: Gateway): { outcome: string; duration_ms: number } | undefined {
  const line = server.output().split("\n").find((text) => text.includes('"msg":"shut down"'));
  return line === undefined ? undefined : (JSON.parse(line) as { outcome: string; duration_ms: number });
}

/**
 * From the drain's end to the process's end, at most: Node's own teardown
 * takes a few hundred milliseconds on a busy machine. Next's handler would
 * instead wait for idle keep-alive connections to close (about 4 s here).
 */
const EXIT_MS = 2500;

describe("on SIGTERM, with a generation in flight", () => {
  it("lets it finish with its image, answers new and queued requests 503 with Connection: close, and exits 0", async ({ start }) => {
    const gw = await start();
    const inFlight = finishedAt(postJson(`${gw.url}/api/generate`, small));
    expect(await eventually(() => emulator.stats().active === 1)).toBe(true);
    const queued = postJson(`${gw.url}/api/generate`, small);
    expect(await eventually(async () => (await health(gw.url)).queued === 1)).toBe(true);

    const exit = finishedAt(signalGateway(gw));
    // The listener stays open while draining: a new request is answered, not refused.
    expect(await draining(gw)).toBe(true);
    expect(await health(gw.url)).toMatchObject({ status: "degraded", shutting_down: true });
    expectShutdown503(await postJson(`${gw.url}/api/generate`, small));
    expectShutdown503(await queued);

    const [answer, answeredAt] = await inFlight;
    expect(answer.status).toBe(200);
    expect((answer.body as { image_base64: string }).image_base64).toMatch(/^data:image\/jpeg;base64,\/9j\//);
    expect(answer.headers.get("connection")).toBe("close");

    const [{ code, signal }, exitedAt] = await exit;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    // Drained means exit: no wait for idle keep-alive connections to time out.
    expect(exitedAt - answeredAt).toBeLessThan(EXIT_MS);
    expect(shutdownLine(gw)?.outcome).toBe("drained");
    expect(emulator.stats()).toMatchObject({ generateRequests: 1, completed: 1, aborted: 0 });
  });
});

describe("on SIGTERM, with jobs running and queued", () => {
  it("lets the running one finish, keeps the queued ones queued, refuses new ones with 503 creating nothing, and runs the queued ones after the restart", async ({ start, onTestFinished }) => {
    // Both gateways run on it, one after the other: the second finds the first's queued jobs.
    const dataDir = mkdtempSync(path.join(tmpdir(), "shutdown-jobs-"));
    onTestFinished(() => {
      rmSync(dataDir, { recursive: true, force: true });
    });
    const gw = await start({ DATA_DIR: dataDir, SHUTDOWN_GRACE: "20" });
    const submit = async (target: Gateway, seed: number, headers: Record<string, string> = {}) =>
      postJson(`${target.url}/api/jobs`, { ...small, seed }, { headers: { "content-type": "application/json", ...headers } });
    const ids: string[] = [];
    for (let seed = 1; seed <= 4; seed++) ids.push(((await submit(gw, seed)).body as { id: string }).id);
    expect(await eventually(() => emulator.stats().active === 1)).toBe(true);

    const exit = signalGateway(gw);
    expect(await draining(gw)).toBe(true);
    const refused = await submit(gw, 9, { "idempotency-key": "after-the-drain" });
    expectShutdown503(refused);
    expect((await exit).code).toBe(0);
    expect(emulator.stats().generateRequests, "only the running one reached the GPU").toBe(1);

    const next = await start({ DATA_DIR: dataDir });
    const status = async (id: string) => ((await call(`${next.url}/api/jobs/${id}`)).body as { status: string; error: unknown }).status;
    expect(await status(ids[0] ?? "")).toBe("succeeded");
    expect(await eventually(async () => (await Promise.all(ids.map(status))).every((each) => each === "succeeded"), 20_000), "the queued ones ran after the restart").toBe(true);
    expect(emulator.stats().generateRequests).toBe(4);
    // The refused one was never kept: its key makes a new job now.
    expect((await submit(next, 9, { "idempotency-key": "after-the-drain" })).headers.get("idempotent-replayed")).toBeNull();
  });
});

describe("on SIGTERM, with a stream in flight", () => {
  it("lets it run to its complete event, ends a queued stream with an error event, and exits 0", async ({ start }) => {
    const gw = await start();
    const sentAt = performance.now();
    const inFlight = finishedAt(streamGenerate(`${gw.url}/api/generate-stream`, small));
    expect(await eventually(() => emulator.stats().active === 1)).toBe(true);
    const queued = streamGenerate(`${gw.url}/api/generate-stream`, small);
    expect(await eventually(async () => (await health(gw.url)).queued === 1)).toBe(true);

    const signalledAt = performance.now() - sentAt;
    const exit = finishedAt(signalGateway(gw));
    expect(await draining(gw)).toBe(true);
    const refused = await streamGenerate(`${gw.url}/api/generate-stream`, small);
    expectShutdown503({ status: refused.response.status, headers: refused.response.headers, body: refused.json });

    const waiting = await queued;
    expect(waiting.response.status).toBe(200);
    expect(waiting.types).toEqual(["queued", "error"]);
    expect(waiting.events.at(-1)?.data).toEqual({ type: "error", kind: "shutting_down", message: SHUTTING_DOWN });

    const [stream, endedAt] = await inFlight;
    expect(stream.response.status).toBe(200);
    expect(stream.types).toEqual(["queued", ...Array<string>(STEPS + 1).fill("progress"), "complete"]);
    // Still streaming after the signal: progress went on arriving on the open connection.
    expect(stream.events.filter((event) => event.data?.type === "progress" && event.at > signalledAt).length).toBeGreaterThan(0);
    expect(stream.events.at(-1)?.data?.image_base64).toMatch(/^data:image\/jpeg;base64,/);

    const [{ code, signal }, exitedAt] = await exit;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(exitedAt - endedAt).toBeLessThan(EXIT_MS);
    expect(shutdownLine(gw)?.outcome).toBe("drained");
    // One generation reached the GPU, and its complete event (above) shows it ran uncut. Not `aborted: 0`: the gateway
    // lets go of the upstream at the complete event, and whether the server's response had ended by then is a race of its last bytes.
    expect(emulator.stats().generateRequests).toBe(1);
  });
});

describe("past SHUTDOWN_GRACE", () => {
  it("aborts the generation and the stream still running, upstream included, and exits 0 after about the grace period", async ({ start }) => {
    emulator.setStepMs(1000); // 6 s per image against 1 s of grace
    const gw = await start({ SHUTDOWN_GRACE: "1", MAX_CONCURRENT_REQUESTS: "2" });
    const plain = postJson(`${gw.url}/api/generate`, small);
    const stream = streamGenerate(`${gw.url}/api/generate-stream`, small);
    expect(await eventually(() => emulator.stats().active === 2)).toBe(true);

    const { code, signal, afterMs } = await signalGateway(gw);
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    // Cut off at the end of the grace period, and answered within the second after it.
    const drain = shutdownLine(gw);
    expect(drain?.outcome).toBe("cut_off");
    expect(drain?.duration_ms).toBeGreaterThanOrEqual(1000);
    expect(afterMs).toBeLessThan(1000 + EXIT_MS);

    // The plain request: the shutdown's 503 (not a 504: the GPU did not time out, the gateway gave up).
    expectShutdown503(await plain);
    // The stream had started: its last event says why it ends.
    const { response, types, events } = await stream;
    expect(response.status).toBe(200);
    expect(types.at(-1)).toBe("error");
    expect(types.slice(0, -1).every((type) => type === "progress" || type === "queued")).toBe(true);
    expect(events.at(-1)?.data).toEqual({ type: "error", kind: "shutting_down", message: SHUTTING_DOWN });
    // The GPU server saw both connections close before the images were done.
    expect(await eventually(() => emulator.stats().aborted === 2)).toBe(true);
    expect(emulator.stats().completed).toBe(0);
  });
});

describe("on the way out", () => {
  it("gives back the shared limiter's slots in Redis, even one the GPU server may still be running, instead of leaving them to lapse", async ({ start }) => {
    const redis = await startRedisServer();
    const client = new Redis(redis.url);
    try {
      emulator.setStepMs(1000);
      const gw = await start({ REDIS_URL: redis.url, LEASE_TTL: "60", SHUTDOWN_GRACE: "0.3" });
      const plain = postJson(`${gw.url}/api/generate`, small);
      expect(await eventually(() => emulator.stats().active === 1)).toBe(true);
      const leases = "{text2image-gateway:limiter}:leases";
      expect(await client.zcard(leases)).toBe(1);

      const { code } = await signalGateway(gw);
      expect(code).toBe(0);
      expectShutdown503(await plain);
      // Cut off while the GPU server (which ignores closed connections) still runs it: an orphan, whose slot
      // the gateway held until the exit. Left in Redis, it would bar every other gateway's slot for LEASE_TTL.
      expect(await client.zcard(leases)).toBe(0);
    } finally {
      client.disconnect();
      await redis.stop();
    }
  });
});

describe("an idle gateway", () => {
  it.for([["SIGTERM"], ["SIGINT"]] as const)("exits 0 at once on %s", async ([name], { start }) => {
    emulator.setStepMs(1);
    const gw = await start();
    // Served a generation first: its connection stays open, idle, as a client's pool keeps it.
    expect((await postJson(`${gw.url}/api/generate`, small)).status).toBe(200);
    const { code, signal, afterMs } = await signalGateway(gw, name);
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(shutdownLine(gw)).toMatchObject({ outcome: "idle", duration_ms: expect.any(Number) as unknown });
    // Nothing waited for: not the idle keep-alive connection, not SHUTDOWN_GRACE (30 s). A second is room
    // for a loaded machine (it takes a few ms alone; 100 ms failed now and then beside other builds).
    expect(shutdownLine(gw)?.duration_ms).toBeLessThan(1000);
    expect(afterMs).toBeLessThan(EXIT_MS);
    expect(gw.output()).not.toMatch(/unhandledRejection|uncaughtException/);
  });
});
