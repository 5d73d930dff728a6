/**
 * Several GPU servers behind the built gateway (`next start`), each an
 * emulator on its own port: spreading, ejection and return, failover only when
 * nothing was sent, 503 when every server is out, and the health and metrics
 * bodies. Prints the measured times to eject and to rejoin.
 */
import { afterAll, beforeAll, describe, expect } from "vitest";
import { startRedisServer } from "../redis-server";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { call, eventually, freePort, gatewayLoad, postJson, startGateway, streamGenerate } from "./harness";
import type { Gateway } from "./harness";

const small = { prompt: "a paper boat", width: 256, height: 256, num_inference_steps: 6 };
const NO_SERVER = "No text-to-image server is available";

interface ServerState {
  url: string;
  state: "up" | "ejected" | "down";
  ejected_until: string | null;
  in_flight: number;
  consecutive_failures: number;
  ejections: number;
}

interface HealthBody {
  status: string;
  text2image_server: Record<string, unknown>;
  servers: ServerState[];
}

async function health(gateway: Gateway): Promise<HealthBody> {
  return (await call(`${gateway.url}/api/health`)).body as HealthBody;
}

async function serverState(gateway: Gateway, url: string): Promise<ServerState> {
  const found = (await health(gateway)).servers.find((server) => server.url === url);
  if (!found) throw new Error(`${url} is not in /api/health`);
  return found;
}

const generated = (emulators: Emulator[]) => emulators.map((emulator) => emulator.stats().generateRequests);

describe("two servers", () => {
  let a: Emulator;
  let b: Emulator;
  let gateway: Gateway;

  beforeAll(async () => {
    [a, b] = await Promise.all([startEmulator({ stepMs: 1 }), startEmulator({ stepMs: 1 })]);
    const withCredentials = new URL(a.url);
    withCredentials.username = "gpu";
    withCredentials.password = "hunter2secret";
    gateway = await startGateway({
      TEXT2IMAGE_SERVER_URL: `${withCredentials.href}, ${b.url}`,
      MAX_CONCURRENT_REQUESTS: "8",
      HEALTH_INTERVAL: "2",
      HEALTH_REUSE: "0.5",
      EJECT_AFTER_FAILURES: "3",
      EJECT_BASE_SECONDS: "1",
    });
  });

  afterAll(async () => {
    await gateway.stop();
    await Promise.all([a.close(), b.close()]);
  });

  it("names both servers in GET /api, without credentials", async () => {
    const answer = await call(`${gateway.url}/api`);
    expect(answer.body).toMatchObject({ text2image_server_url: `${a.url},${b.url}` });
    expect(JSON.stringify(answer.body)).not.toContain("hunter2secret");
  });

  it("spreads traffic over both, one after another and at once", async () => {
    a.reset();
    b.reset();
    for (let i = 0; i < 10; i++) expect((await postJson(`${gateway.url}/api/generate`, small)).status).toBe(200);
    const [sequentialA, sequentialB] = generated([a, b]);
    expect(sequentialA).toBeGreaterThanOrEqual(3);
    expect(sequentialB).toBeGreaterThanOrEqual(3);

    a.reset();
    b.reset();
    a.setStepMs(100);
    b.setStepMs(100);
    const answers = await Promise.all(Array.from({ length: 8 }, () => postJson(`${gateway.url}/api/generate`, small)));
    a.setStepMs(1);
    b.setStepMs(1);
    expect(answers.map((answer) => answer.status)).toEqual(Array<number>(8).fill(200));
    const [concurrentA, concurrentB] = generated([a, b]);
    expect(Math.min(concurrentA ?? 0, concurrentB ?? 0)).toBeGreaterThanOrEqual(3);
    console.log(`multi-server: 10 sequential requests went ${sequentialA}/${sequentialB}, 8 concurrent ${concurrentA}/${concurrentB}`);
  });

  it("reports each server and their aggregate in /api/health, from one probe per server however many poll", async () => {
    await new Promise((resolve) => setTimeout(resolve, 550)); // past HEALTH_REUSE: every probe answer now is from after the last test's load
    const body = await health(gateway);
    expect(body).toEqual({
      status: "healthy",
      gateway: "running",
      in_flight: 0,
      queued: 0,
      max_concurrent: 8,
      orphaned: 0,
      text2image_server: {
        status: "healthy",
        model_loaded: true,
        cuda_available: true,
        current_queue_size: 0,
        active_generations: 0,
        available_slots: 8,
      },
      servers: [a, b].map((emulator) => ({
        url: emulator.url,
        state: "up",
        ejected_until: null,
        in_flight: 0,
        max_concurrent: 8,
        available_slots: 4,
        consecutive_failures: 0,
        ejections: 0,
        orphaned: 0,
        health: expect.objectContaining({ status: "healthy", available_slots: 4 }) as unknown,
      })),
    });
    expect(JSON.stringify(body)).not.toContain("hunter2secret");

    // At most one probe per server per HEALTH_REUSE (0.5 s), whoever asks (polls or the background probe).
    a.reset();
    b.reset();
    const started = performance.now();
    await Promise.all(Array.from({ length: 50 }, () => health(gateway)));
    const windows = Math.floor((performance.now() - started) / 500);
    expect(a.stats().healthRequests).toBeLessThanOrEqual(1 + windows);
    expect(b.stats().healthRequests).toBeLessThanOrEqual(1 + windows);
  });

  it("returns every server's metrics by URL from /api/metrics", async () => {
    const answer = await call(`${gateway.url}/api/metrics`);
    expect(answer.status).toBe(200);
    const direct = await Promise.all([a, b].map(async (emulator) => (await call(`${emulator.url}/metrics`)).body));
    expect(answer.body).toEqual({ servers: { [a.url]: direct[0], [b.url]: direct[1] } });
  });

  it("never replays a generation that reached a GPU: a reset after sending is a 502", async () => {
    a.reset();
    b.reset();
    const answer = await postJson(`${gateway.url}/api/generate`, { ...small, prompt: "boom [[fault:reset_before_headers]]" });
    expect(answer).toMatchObject({ status: 502, body: { detail: "Connection to the text-to-image server was lost" } });
    // The emulator that got it reset the connection; the other one received nothing.
    expect(generated([a, b]).sort()).toEqual([0, 1]);

    const stream = await streamGenerate(`${gateway.url}/api/generate-stream`, { ...small, prompt: "cut [[fault:reset_mid_body]]" });
    expect(stream.types.at(-1)).toBe("error");
    expect(generated([a, b]).reduce((total, count) => total + count)).toBe(2);
  });

  it("ejects a server answering 5xx, sends it nothing while out, and takes it back once it is well", async () => {
    // The last test's resets leave orphans (counted in flight until a probe sees the work done); one
    // left on b alone would draw every call to a, so start with none anywhere.
    const settled = async () => (await health(gateway)).servers.every((server) => server.in_flight === 0);
    expect(await eventually(settled, 10_000)).toBe(true);
    // A success on each first: the resets of the last test are forgotten.
    a.reset();
    b.reset();
    while (Math.min(...generated([a, b])) < 1) expect((await postJson(`${gateway.url}/api/generate`, small)).status).toBe(200);
    a.reset();
    b.reset();
    b.setFault({ kind: "status", status: 500, detail: "CUDA error" });
    const faultAt = performance.now();
    const faultWallClock = Date.now();
    const statuses: number[] = [];
    while (b.stats().generateRequests < 3 && statuses.length < 20) {
      statuses.push((await postJson(`${gateway.url}/api/generate`, small)).status);
    }
    const ejectedAt = performance.now();
    const ejectedAfterMs = ejectedAt - faultAt;
    // Its 5xx answers reached the callers (a generation that reached a GPU is not replayed).
    expect(statuses.filter((status) => status === 500)).toHaveLength(3);
    const ejected = await serverState(gateway, b.url);
    expect(ejected).toMatchObject({ state: "ejected", ejections: 1, consecutive_failures: 3 });
    // Out for EJECT_BASE_SECONDS from the moment of its third failure.
    const until = Date.parse(ejected.ejected_until ?? "");
    expect(until).toBeGreaterThanOrEqual(faultWallClock + 1000);
    expect(until).toBeLessThanOrEqual(Date.now() + 1000);

    for (let i = 0; i < 6; i++) expect((await postJson(`${gateway.url}/api/generate`, small)).status).toBe(200);
    expect(b.stats().generateRequests).toBe(3);

    b.setFault(null);
    expect(await eventually(async () => (await serverState(gateway, b.url)).state === "up", 5000)).toBe(true);
    const rejoinedAfterMs = performance.now() - ejectedAt;
    for (let i = 0; i < 6; i++) expect((await postJson(`${gateway.url}/api/generate`, small)).status).toBe(200);
    expect(b.stats().generateRequests).toBeGreaterThan(3);
    console.log(
      `multi-server: 5xx server ejected ${ejectedAfterMs.toFixed(0)} ms after its fault began (3 requests on it), ` +
        `back in rotation ${rejoinedAfterMs.toFixed(0)} ms after its ejection (EJECT_BASE_SECONDS=1, HEALTH_INTERVAL=2)`,
    );
  });
});

describe("a server that goes down and comes back", () => {
  let a: Emulator;
  let b: Emulator;
  let gateway: Gateway;

  beforeAll(async () => {
    [a, b] = await Promise.all([startEmulator({ stepMs: 1 }), startEmulator({ stepMs: 1 })]);
    gateway = await startGateway({
      TEXT2IMAGE_SERVER_URL: `${a.url},${b.url}`,
      HEALTH_INTERVAL: "0.5",
      EJECT_AFTER_FAILURES: "3",
      EJECT_BASE_SECONDS: "1",
    });
  });

  afterAll(async () => {
    await gateway.stop();
    await Promise.all([a.close(), b.close()]);
  });

  it("answers every request while it is ejected, and gives it traffic again once it is back", async () => {
    for (let i = 0; i < 4; i++) await postJson(`${gateway.url}/api/generate`, small);
    expect(b.stats().generateRequests).toBeGreaterThan(0);

    await b.close();
    const downAt = performance.now();
    const statuses: number[] = [];
    let state: ServerState | undefined;
    for (;;) {
      statuses.push((await postJson(`${gateway.url}/api/generate`, small)).status);
      state = await serverState(gateway, b.url);
      if (state.state === "ejected" || performance.now() - downAt > 10_000) break;
    }
    const ejectedAt = performance.now();
    const ejectedAfterMs = ejectedAt - downAt;
    expect(state.state).toBe("ejected");
    // Refused connections are tried on the other server: nobody saw the outage.
    expect(statuses.every((status) => status === 200)).toBe(true);
    const sentToA = a.stats().generateRequests;

    // While it is out, every request goes straight to the other one.
    for (let i = 0; i < 5; i++) expect((await postJson(`${gateway.url}/api/generate`, small)).status).toBe(200);
    expect(a.stats().generateRequests).toBe(sentToA + 5);

    b = await startEmulator({ stepMs: 1, port: b.port });
    const upAt = performance.now();
    expect(await eventually(async () => (await serverState(gateway, b.url)).state === "up", 5000)).toBe(true);
    const rejoinedAt = performance.now();
    for (let i = 0; i < 6; i++) expect((await postJson(`${gateway.url}/api/generate`, small)).status).toBe(200);
    expect(b.stats().generateRequests).toBeGreaterThan(0);
    console.log(
      `multi-server: stopped server ejected ${ejectedAfterMs.toFixed(0)} ms after it went down ` +
        `(${statuses.length} requests meanwhile, all 200); back in rotation ${(rejoinedAt - upAt).toFixed(0)} ms after its restart, ` +
        `${(rejoinedAt - ejectedAt).toFixed(0)} ms after its ejection (EJECT_BASE_SECONDS=1, HEALTH_INTERVAL=0.5)`,
    );
  });

  it("ejects a server that stops answering its probes, with no traffic at all", async () => {
    await b.close();
    const downAt = performance.now();
    expect(await eventually(async () => (await serverState(gateway, b.url)).state === "ejected", 10_000)).toBe(true);
    console.log(
      `multi-server: idle server ejected by its probes alone ${(performance.now() - downAt).toFixed(0)} ms after it went down ` +
        `(EJECT_AFTER_FAILURES=3, HEALTH_INTERVAL=0.5)`,
    );
  });
});

describe("refused connections", () => {
  it("sends a request refused by one server to the other", async ({ startGateway, onTestFinished }) => {
    const alive = await startEmulator({ stepMs: 1 });
    onTestFinished(() => alive.close());
    const deadUrl = `http://127.0.0.1:${await freePort()}`;
    // The dead server first: the first request goes to it, before any probe has found it dead.
    const gateway = await startGateway({ TEXT2IMAGE_SERVER_URL: `${deadUrl},${alive.url}`, HEALTH_INTERVAL: "60" });
    const answer = await postJson(`${gateway.url}/api/generate`, small);
    expect(answer.status).toBe(200);
    expect(alive.stats().generateRequests).toBe(1);
    const dead = await serverState(gateway, deadUrl);
    expect(dead.consecutive_failures).toBeGreaterThanOrEqual(1);
    expect(dead.state).not.toBe("up");
  });
});

describe("every server out", () => {
  it("answers 503 at once, and never ejects the last server", async ({ startGateway }) => {
    const urls = [`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`];
    const gateway = await startGateway({ TEXT2IMAGE_SERVER_URL: urls.join(","), EJECT_AFTER_FAILURES: "1", HEALTH_INTERVAL: "60" });
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      const answer = await postJson(`${gateway.url}/api/generate`, small);
      expect(answer).toMatchObject({ status: 503, body: { detail: NO_SERVER } });
      expect(performance.now() - started).toBeLessThan(2000); // no timeout was waited for
    }
    const stream = await streamGenerate(`${gateway.url}/api/generate-stream`, small);
    expect(stream.response.status).toBe(503);
    expect(stream.json).toMatchObject({ detail: NO_SERVER });

    const body = await health(gateway);
    expect(body).toMatchObject({ status: "degraded", text2image_server: { status: "unreachable", error: NO_SERVER } });
    expect(body.servers.map((server) => server.url)).toEqual(urls);
    expect(body.servers.filter((server) => server.state === "ejected")).toHaveLength(1);
    expect(body.servers.filter((server) => server.state === "down")).toHaveLength(1);

    const metrics = await call(`${gateway.url}/api/metrics`);
    expect(metrics.status).toBe(200);
    expect(Object.keys((metrics.body as { servers: object }).servers)).toEqual(urls);
  });
});

// With Redis the global limit stays MAX_CONCURRENT_REQUESTS; this gateway's own limit stands in front of it.
describe.each(["in-process", "Redis"])("servers that can take fewer than MAX_CONCURRENT_REQUESTS (MAX_CONCURRENT_PER_SERVER × servers), %s limiter", (limiter) => {
  it("admit only what the servers can take: the rest wait in the one queue, counted, told, and bounded by QUEUE_TIMEOUT", async ({ startGateway, onTestFinished }) => {
    const [a, b] = await Promise.all([startEmulator({ stepMs: 300 }), startEmulator({ stepMs: 300 })]);
    const redis = limiter === "Redis" ? await startRedisServer() : undefined;
    onTestFinished(async () => {
      await Promise.all([a.close(), b.close(), redis?.stop()]);
    });
    const gateway = await startGateway({
      ...(redis ? { REDIS_URL: redis.url } : {}),
      TEXT2IMAGE_SERVER_URL: `${a.url},${b.url}`,
      MAX_CONCURRENT_REQUESTS: "10",
      MAX_CONCURRENT_PER_SERVER: "1",
      QUEUE_TIMEOUT: "1",
      REQUEST_TIMEOUT: "10",
    });
    const plain = Array.from({ length: 5 }, (_, seed) => postJson(`${gateway.url}/api/generate`, { ...small, seed }));
    expect(await eventually(() => a.stats().active + b.stats().active === 2)).toBe(true);
    const stream = streamGenerate(`${gateway.url}/api/generate-stream`, small);
    expect(await eventually(async () => (await gatewayLoad(gateway.url)).queued === 4)).toBe(true);
    expect(await gatewayLoad(gateway.url)).toEqual({ in_flight: 2, queued: 4 });

    const statuses = (await Promise.all(plain)).map((answer) => answer.status).sort();
    expect(statuses).toEqual([200, 200, 503, 503, 503]);
    const { types, events } = await stream;
    // A stream that had to wait heard so, then got the queue timeout's error at the end.
    expect(types[0]).toBe("queued");
    expect(events.at(-1)?.data).toEqual({ type: "error", kind: "queue_timeout", message: "No generation slot became free within 1 s (QUEUE_TIMEOUT)" });
    expect(Math.max(a.stats().maxConcurrent, b.stats().maxConcurrent)).toBe(1);
  });
});
