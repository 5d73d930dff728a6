/**
 * Many gateways, one service: two built gateways sharing one redis-server
 * (REDIS_URL) and one bucket (IMAGE_STORE=s3, s3rver), so jobs are shared
 * (JOB_STORE=redis by default then). A job made on one is read, followed,
 * canceled and its image fetched on the other; a gateway killed or stopped
 * leaves its queued jobs to the other and its running ones failed, never run
 * twice.
 */
import { afterAll, beforeAll, beforeEach, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { startRedisServer } from "../redis-server";
import type { RedisServer } from "../redis-server";
import { startS3Server } from "../s3-server";
import type { S3Server } from "../s3-server";
import { it as gatewayIt } from "./fixtures";
import { call, directImage, readEvents, signalGateway } from "./harness";
import type { Gateway } from "./harness";

interface JobBody {
  id: string;
  status: string;
  error: { kind: string } | null;
  output: { image_url: string; sha256: string } | null;
  urls: { self: string; cancel: string; events: string };
}

const LEASE_TTL_S = 1.5;
const body = { prompt: "one service", width: 256, height: 256, num_inference_steps: 6 };
const TOKEN = { "x-client-token": "shared-jobs-client-01" };

let redis: RedisServer;
let s3: S3Server;
let emulator: Emulator;

beforeAll(async () => {
  [redis, s3, emulator] = await Promise.all([startRedisServer({ persist: true }), startS3Server(), startEmulator({ stepMs: 20, slots: 8 })]);
});

afterAll(async () => {
  await Promise.all([emulator.close(), s3.close(), redis.stop()]);
});

beforeEach(() => {
  emulator.reset();
  emulator.setStepMs(20);
});

/** `start`: a gateway of the shared service (the Redis, the bucket, the emulator); it stops when the test ends. */
const it = gatewayIt.extend("start", ({ startGateway }) => (env: Record<string, string> = {}) =>
  startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, REDIS_URL: redis.url, LEASE_TTL: String(LEASE_TTL_S), ...s3.env, ...env }),
);

async function submit(gateway: Gateway, fields: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<JobBody> {
  const answer = await call(`${gateway.url}/api/jobs`, { method: "POST", headers: { "content-type": "application/json", ...TOKEN, ...headers }, body: JSON.stringify({ ...body, ...fields }) });
  expect(answer.status, JSON.stringify(answer.body)).toBeLessThan(300);
  return answer.body as JobBody;
}

async function job(gateway: Gateway, id: string): Promise<JobBody> {
  return (await call(`${gateway.url}/api/jobs/${id}`, { headers: TOKEN })).body as JobBody;
}

async function ended(gateway: Gateway, id: string, timeoutMs = 15_000): Promise<JobBody> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await job(gateway, id);
    if (["succeeded", "failed", "canceled"].includes(now.status) || Date.now() > deadline) return now;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("jobs shared through Redis and a bucket", () => {
  it("answers for a job made on A on B: read, listed, followed from Last-Event-ID, its image, one copy in the bucket", async ({ start }) => {
    const [a, b] = await Promise.all([start(), start()]);
    const made = await submit(a, { seed: 11 }, { prefer: "wait=20" });
    expect(made.status).toBe("succeeded");
    expect(await job(b, made.id)).toMatchObject({ id: made.id, status: "succeeded" });
    const listed = (await call(`${b.url}/api/jobs`, { headers: TOKEN })).body as { jobs: JobBody[] };
    expect(listed.jobs.map((entry) => entry.id)).toContain(made.id);

    const all = await readEvents(await fetch(`${b.url}${made.urls.events}`, { headers: TOKEN }), performance.now());
    const ids = all.flatMap((event) => (event.id === undefined ? [] : [Number(event.id)]));
    expect(ids.length).toBeGreaterThan(3);
    expect(all.at(-1)?.data).toMatchObject({ type: "complete" });
    const rest = await readEvents(await fetch(`${a.url}${made.urls.events}`, { headers: { ...TOKEN, "last-event-id": String(ids[1]) } }), performance.now());
    expect(rest.flatMap((event) => (event.id === undefined ? [] : [Number(event.id)]))).toEqual(ids.slice(2));

    const image = Buffer.from(await (await fetch(`${b.url}${made.output?.image_url ?? ""}`)).arrayBuffer());
    expect(`data:image/jpeg;base64,${image.toString("base64")}`).toBe(await directImage(emulator.url, { ...body, negative_prompt: "", guidance_scale: 0, seed: 11 }));
    expect((await s3.keys()).filter((key) => key.endsWith(made.output?.sha256 ?? "-"))).toHaveLength(1);
  });

  it("follows on B a job running on A, live, to its end", async ({ start }) => {
    const [a, b] = await Promise.all([start(), start()]);
    emulator.setStepMs(150);
    const made = await submit(a, { seed: 12 });
    const followed = await readEvents(await fetch(`${b.url}${made.urls.events}`, { headers: TOKEN }), performance.now());
    const types = followed.flatMap((event) => (event.data ? [event.data.type] : []));
    expect(types).toContain("progress");
    expect(types.at(-1)).toBe("complete");
  });

  it("stops on A, within a second, a job canceled on B", async ({ start }) => {
    const [a, b] = await Promise.all([start(), start()]);
    emulator.setStepMs(300);
    const made = await submit(a, { seed: 13, num_inference_steps: 12 });
    await expect.poll(() => emulator.stats().active, { timeout: 5000 }).toBe(1);
    const canceled = await call(`${b.url}${made.urls.cancel}`, { method: "POST", headers: TOKEN });
    expect((canceled.body as JobBody).status).toBe("canceled");
    const at = performance.now();
    await expect.poll(() => emulator.stats().aborted, { timeout: 1000 }).toBe(1);
    expect(performance.now() - at).toBeLessThan(1000);
    expect((await job(a, made.id)).status).toBe("canceled");
  });

  it("after kill -9 of A: its running job fails as gateway_lost, its queued one runs on B; each reached the GPU once", async ({ start }) => {
    const [a, b] = await Promise.all([start({ MAX_CONCURRENT_REQUESTS: "1" }), start()]);
    emulator.setStepMs(250);
    const running = await submit(a, { seed: 21 });
    await expect.poll(() => emulator.stats().active, { timeout: 5000 }).toBe(1);
    const queued = await submit(a, { seed: 22 });
    expect(queued.status).toBe("queued");
    await signalGateway(a, "SIGKILL");
    expect(await ended(b, running.id)).toMatchObject({ status: "failed", error: { kind: "gateway_lost" } });
    expect((await ended(b, queued.id)).status).toBe("succeeded");
    expect(emulator.stats().lastSeeds.filter((seed) => seed === "22")).toHaveLength(1);
    expect(emulator.stats().generateRequests, "nothing sent twice").toBe(2);
  });

  it("after SIGTERM of A: its running job finishes within the grace, its queued one runs on B", async ({ start }) => {
    const [a, b] = await Promise.all([start({ MAX_CONCURRENT_REQUESTS: "1", SHUTDOWN_GRACE: "20" }), start()]);
    emulator.setStepMs(150);
    const running = await submit(a, { seed: 31 });
    await expect.poll(() => emulator.stats().active, { timeout: 5000 }).toBe(1);
    const queued = await submit(a, { seed: 32 });
    expect((await signalGateway(a)).code).toBe(0);
    expect((await ended(b, running.id)).status).toBe("succeeded");
    expect((await ended(b, queued.id)).status).toBe("succeeded");
    expect(emulator.stats().generateRequests).toBe(2);
  });

  it("with Redis killed mid-run: 503s and a degraded health meanwhile; once it is back, the running job ends succeeded, sent once", async ({ start }) => {
    const [a] = await Promise.all([start()]);
    emulator.setStepMs(200);
    const running = await submit(a, { seed: 41, num_inference_steps: 12 });
    await expect.poll(() => emulator.stats().active, { timeout: 5000 }).toBe(1);
    await redis.stop();
    const refused = await call(`${a.url}/api/jobs`, { method: "POST", headers: { "content-type": "application/json", ...TOKEN }, body: JSON.stringify(body) });
    expect(refused.status).toBe(503);
    expect((refused.body as { detail: string }).detail).toMatch(/job store \(Redis\) is unreachable/);
    expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
    expect((await call(`${a.url}/api/jobs/${running.id}`, { headers: TOKEN })).status).toBe(503);
    const health = (await call(`${a.url}/api/health`)).body as { status: string; jobs: unknown };
    expect(health).toMatchObject({ status: "degraded", jobs: { store: "redis", shared: true, reachable: false } });
    // The generation ends while Redis is away; its end waits for it.
    await expect.poll(() => emulator.stats().active, { timeout: 10_000 }).toBe(0);
    await redis.restart();
    const end = await ended(a, running.id);
    expect(end, JSON.stringify(end.error)).toMatchObject({ status: "succeeded" });
    expect((await fetch(`${a.url}${(await job(a, running.id)).output?.image_url ?? ""}`)).status).toBe(200);
    expect(emulator.stats().generateRequests, "nothing sent twice").toBe(1);
    await expect.poll(async () => ((await call(`${a.url}/api/health`)).body as { jobs: unknown }).jobs, { timeout: 10_000 }).toMatchObject({ reachable: true });
    await expect.poll(async () => (await call(`${a.url}/api/jobs`, { method: "POST", headers: { "content-type": "application/json", ...TOKEN }, body: JSON.stringify(body) })).status, { timeout: 10_000 }).toBeLessThan(300);
  });

  it("keeps one queue: a job waiting on B has its global place, read on A; MAX_QUEUE bounds the line over both", async ({ start }) => {
    const limits = { MAX_CONCURRENT_REQUESTS: "1", MAX_QUEUE: "1" };
    const [a, b] = await Promise.all([start(limits), start(limits)]);
    emulator.setStepMs(200);
    const first = await submit(a, { seed: 51 });
    await expect.poll(() => emulator.stats().active, { timeout: 5000 }).toBe(1);
    const second = await submit(b, { seed: 52 });
    expect(second).toMatchObject({ status: "queued" });
    expect(await job(a, second.id)).toMatchObject({ status: "queued", queue_position: 1 });
    const third = await call(`${a.url}/api/jobs`, { method: "POST", headers: { "content-type": "application/json", ...TOKEN }, body: JSON.stringify({ ...body, seed: 53 }) });
    expect(third.status).toBe(503);
    expect((third.body as { detail: string }).detail).toMatch(/queue is full/);
    expect((await ended(a, first.id)).status).toBe("succeeded");
    expect((await ended(a, second.id)).status).toBe("succeeded");
  });

  it("as on Vercel (VERCEL set), with REDIS_URL and a bucket: jobs are on, and one runs to its end after its 202", async ({ start }) => {
    const gateway = await start({ VERCEL: "1" });
    const made = await submit(gateway, { seed: 61 });
    expect(made.status).not.toBe("succeeded");
    expect((await ended(gateway, made.id)).status).toBe("succeeded");
  });

  it("with REDIS_URL alone (images on disk), keeps jobs per instance, and says so at start and in /api/health, with how to share them", async ({ startGateway }) => {
    const gateway = await startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, REDIS_URL: redis.url });
    const health = (await call(`${gateway.url}/api/health`)).body as { jobs: { note?: string } };
    expect(health.jobs).toMatchObject({ store: "sqlite", shared: false });
    expect(health.jobs.note).toMatch(/per instance.*IMAGE_STORE=s3/);
    expect(gateway.output()).toContain("jobs are kept per instance");
  });
});
