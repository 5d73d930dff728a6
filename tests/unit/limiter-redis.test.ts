/**
 * The Redis limiter against a real redis-server: two RedisLimiter instances
 * in this process stand for two gateways sharing one Redis.
 */
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "@/lib/config";
import { GatewayError } from "@/lib/errors";
import { RedisLimiter } from "@/lib/limiter/redis";
import type { RedisLimiterOptions } from "@/lib/limiter/redis";
import { limiterKeys } from "@/lib/limiter/redis-scripts";
import type { Slot } from "@/lib/limiter/types";
import { startRedisServer } from "../redis-server";
import type { RedisServer } from "../redis-server";

const open = () => new AbortController().signal;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let server: RedisServer;
let inspector: Redis;
let prefix = "";
let made: RedisLimiter[] = [];

beforeAll(async () => {
  server = await startRedisServer();
  inspector = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
});

afterAll(async () => {
  inspector.disconnect();
  await server.stop();
});

let testNumber = 0;
afterEach(() => {
  for (const limiter of made) limiter.disconnect();
  made = [];
});

/** A new test's key space, so tests never see each other's leases. */
function freshKeys(): void {
  prefix = `limiter-test-${++testNumber}`;
}

/** One "gateway": its own limiter and connections, the test's shared keys. */
function gateway(options: Partial<RedisLimiterOptions> = {}): RedisLimiter {
  const limiter = new RedisLimiter({
    redisUrl: server.url,
    maxConcurrent: 1,
    maxQueue: 10,
    queueTimeoutMs: 10_000,
    leaseTtlMs: 600,
    failureMode: "local",
    keyPrefix: prefix,
    pollMs: 50,
    ...options,
  });
  made.push(limiter);
  return limiter;
}

function codeOf(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "granted",
    (error: unknown) => (error instanceof GatewayError ? error.code : `unexpected: ${String(error)}`),
  );
}

async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(10);
  }
  return check();
}

/** What Redis itself holds for the test's keys. */
async function inRedis() {
  const [leases, queue] = limiterKeys(prefix).keys;
  return { leases: await inspector.zcard(leases), queue: await inspector.zcard(queue) };
}

/** Starts an acquire and resolves once it is queued (with the positions it hears) or granted. */
function enqueue(limiter: RedisLimiter, signal = open()) {
  const heard: number[] = [];
  let queued!: () => void;
  const inLine = new Promise<void>((resolve) => (queued = resolve));
  const slot = limiter.acquire(signal, (position) => {
    heard.push(position);
    queued();
  });
  return { slot, heard, inLine: Promise.race([inLine, slot.then(() => undefined)]) };
}

describe("RedisLimiter with Redis up", () => {
  it("holds every gateway to one limit and reports the global counts", async () => {
    freshKeys();
    // Polls a second apart: only pub/sub can tell b of the release sooner.
    const a = gateway({ maxConcurrent: 2, leaseTtlMs: 3000, pollMs: 1000 });
    const b = gateway({ maxConcurrent: 2, leaseTtlMs: 3000, pollMs: 1000 });
    const held = [await a.acquire(open()), await a.acquire(open())];
    const waiting = enqueue(b);
    await waiting.inLine;
    expect(waiting.heard).toEqual([1]);
    expect(await inRedis()).toEqual({ leases: 2, queue: 1 });
    expect(await eventually(() => b.stats().in_flight === 2 && a.stats().queued === 1)).toBe(true);
    expect(b.stats()).toEqual({ in_flight: 2, queued: 1, max_concurrent: 2, limiter: "redis" });

    const releasedAt = performance.now();
    held[0]?.release();
    const slot = await waiting.slot;
    expect(performance.now() - releasedAt).toBeLessThan(500);
    expect(await inRedis()).toEqual({ leases: 2, queue: 0 });
    slot.release();
    held[1]?.release();
    expect(await eventually(async () => (await inRedis()).leases === 0, 500)).toBe(true);
  });

  it("serves waiters in arrival order across gateways and tells each its place", async () => {
    freshKeys();
    const a = gateway();
    const b = gateway();
    const first = await a.acquire(open());
    const order: string[] = [];
    const waiters: { name: string; heard: number[]; slot: Promise<Slot> }[] = [];
    for (const [name, limiter] of [["b1", b], ["a1", a], ["b2", b], ["a2", a]] as const) {
      const waiter = enqueue(limiter);
      await waiter.inLine;
      waiters.push({ name, heard: waiter.heard, slot: waiter.slot.then((slot) => (order.push(name), slot)) });
    }
    first.release();
    for (const [index, waiter] of waiters.entries()) {
      const slot = await waiter.slot;
      // Positions are polled: hold the slot until everyone behind has heard theirs.
      const behind = waiters.slice(index + 1);
      expect(await eventually(() => behind.every((next, place) => next.heard.at(-1) === place + 1), 1000)).toBe(true);
      slot.release();
    }
    expect(order).toEqual(["b1", "a1", "b2", "a2"]);
    expect(waiters.map((waiter) => waiter.heard)).toEqual([[1], [2, 1], [3, 2, 1], [4, 3, 2, 1]]);
  });

  it("lets a newcomer in at once only if everyone queued fits too", async () => {
    freshKeys();
    const a = gateway({ maxConcurrent: 2 });
    const b = gateway({ maxConcurrent: 2 });
    const held = await a.acquire(open());
    expect(await codeOf(b.acquire(open()))).toBe("granted");
    const waiter = enqueue(a);
    await waiter.inLine;
    held.release();
    // A slot is free, but the waiter came first: b's newcomer queues behind it.
    const newcomer = enqueue(b);
    await newcomer.inLine;
    await waiter.slot;
    expect(newcomer.heard[0]).toBeGreaterThanOrEqual(1);
  });

  it("answers queue_full when MAX_QUEUE requests wait over all gateways", async () => {
    freshKeys();
    const a = gateway({ maxQueue: 2 });
    const b = gateway({ maxQueue: 2 });
    await a.acquire(open());
    await enqueue(b).inLine;
    await enqueue(a).inLine;
    expect(await codeOf(b.acquire(open()))).toBe("queue_full");
    expect(await codeOf(a.acquire(open()))).toBe("queue_full");
    expect(await inRedis()).toEqual({ leases: 1, queue: 2 });
  });

  it("answers queue_timeout after QUEUE_TIMEOUT and leaves the queue", async () => {
    freshKeys();
    const a = gateway();
    const b = gateway({ queueTimeoutMs: 200 });
    await a.acquire(open());
    const startedAt = performance.now();
    const error = await b.acquire(open()).catch((caught: unknown) => caught);
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(195);
    expect(error).toMatchObject({ code: "queue_timeout", status: 503, detail: "No generation slot became free within 0.2 s (QUEUE_TIMEOUT)" });
    expect(await eventually(async () => (await inRedis()).queue === 0, 100)).toBe(true);
  });

  it("takes a waiter whose client disconnects out of the queue at once, and the next moves up", async () => {
    freshKeys();
    const a = gateway({ leaseTtlMs: 3000, pollMs: 1000 });
    const b = gateway({ leaseTtlMs: 3000, pollMs: 1000 });
    const held = await a.acquire(open());
    const client = new AbortController();
    const leaving = enqueue(b, client.signal);
    await leaving.inLine;
    const staying = enqueue(a);
    await staying.inLine;
    const abortedAt = performance.now();
    client.abort();
    expect(await codeOf(leaving.slot)).toBe("client_closed");
    expect(await eventually(() => staying.heard.at(-1) === 1, 1000)).toBe(true);
    const movedUpMs = performance.now() - abortedAt;
    expect(movedUpMs).toBeLessThan(500); // not the next poll, a second away
    expect(await inRedis()).toEqual({ leases: 1, queue: 1 });
    held.release();
    await staying.slot;
  });

  it("refuses an already aborted request and counts a double release once", async () => {
    freshKeys();
    const a = gateway({ maxConcurrent: 2 });
    expect(await codeOf(a.acquire(AbortSignal.abort()))).toBe("client_closed");
    const slot = await a.acquire(open());
    await a.acquire(open());
    slot.release();
    slot.release();
    expect(await eventually(async () => (await inRedis()).leases === 1, 500)).toBe(true);
    await sleep(100);
    expect(await inRedis()).toEqual({ leases: 1, queue: 0 });
  });

  it("renews a held slot's lease past LEASE_TTL, and frees a crashed gateway's slot within LEASE_TTL", async () => {
    freshKeys();
    const a = gateway({ leaseTtlMs: 600 });
    const b = gateway({ leaseTtlMs: 600 });
    await a.acquire(open());
    const waiter = enqueue(b);
    await waiter.inLine;
    let granted = false;
    void waiter.slot.then(() => (granted = true));
    await sleep(1500); // 2.5 × LEASE_TTL: renewed all along
    expect(granted).toBe(false);

    const crashedAt = performance.now();
    a.disconnect(); // like kill -9: no release, no more renewals
    await waiter.slot;
    const freedMs = performance.now() - crashedAt;
    console.log(`redis limiter: a crashed gateway's slot was free again after ${Math.round(freedMs)} ms (LEASE_TTL 600 ms)`);
    expect(freedMs).toBeLessThan(600 + 150);
  });

  it("drops the queue entries of a crashed gateway within LEASE_TTL", async () => {
    freshKeys();
    const a = gateway();
    const b = gateway();
    const crashing = gateway();
    const held = await a.acquire(open());
    const lost = enqueue(crashing);
    await lost.inLine;
    const waiter = enqueue(b);
    await waiter.inLine;
    expect(waiter.heard).toEqual([2]);
    const crashedAt = performance.now();
    crashing.disconnect();
    expect(await codeOf(lost.slot)).toBe("limiter_unavailable");
    expect(await eventually(() => waiter.heard.at(-1) === 1, 1500)).toBe(true);
    expect(performance.now() - crashedAt).toBeLessThan(600 + 150);
    held.release();
    await waiter.slot;
  });

  it("on close, takes its waiters out of the queue at once and answers them 503", async () => {
    freshKeys();
    const a = gateway({ leaseTtlMs: 3000 });
    const b = gateway({ leaseTtlMs: 3000 });
    const closing = gateway({ leaseTtlMs: 3000 });
    const held = await a.acquire(open());
    const dropped = enqueue(closing);
    await dropped.inLine;
    const waiter = enqueue(b);
    await waiter.inLine;
    await closing.close();
    expect(await codeOf(dropped.slot)).toBe("limiter_unavailable");
    expect(await inRedis()).toEqual({ leases: 1, queue: 1 });
    expect(await eventually(() => waiter.heard.at(-1) === 1, 1000)).toBe(true);
    held.release();
    await waiter.slot;
  });
});

describe("RedisLimiter with Redis down", () => {
  it("falls back to the local limit (local), refuses new work (closed), and is global again once Redis returns", async () => {
    freshKeys();
    const modes: string[] = [];
    const a = gateway({ maxConcurrent: 2, onModeChange: (mode) => modes.push(mode) });
    const b = gateway({ maxConcurrent: 2 });
    const c = gateway({ maxConcurrent: 2, failureMode: "closed" });
    const aHeld = [await a.acquire(open()), await a.acquire(open())];
    const bWaiting = enqueue(b);
    await bWaiting.inLine;
    const cWaiting = enqueue(c);
    await cWaiting.inLine;

    await server.stop();
    try {
      // b's waiter moves to b's own queue, where a slot is free; c's gets the closed answer.
      const bSlot = await bWaiting.slot;
      const refused = await cWaiting.slot.catch((error: unknown) => error);
      expect(refused).toMatchObject({ code: "limiter_unavailable", status: 503, detail: "Concurrency limiter unavailable" });
      expect(await codeOf(c.acquire(open()))).toBe("limiter_unavailable");
      // a has no waiter to fail: it learns of the outage from its connection's own events, a moment later.
      expect(await eventually(() => a.stats().limiter !== "redis", 2000)).toBe(true);
      expect(a.stats()).toEqual({ in_flight: 2, queued: 0, max_concurrent: 2, limiter: "local (redis unreachable)" });
      expect(c.stats().limiter).toBe("unavailable (redis unreachable)");
      expect(modes).toEqual(["local (redis unreachable)"]);

      // a's two slots, taken globally, now count against its local limit: a third waits for one of them.
      const third = enqueue(a);
      await third.inLine;
      expect(third.heard).toEqual([1]);
      aHeld[0]?.release();
      const aThird = await third.slot;
      expect(await codeOf(b.acquire(open()))).toBe("granted");
      aThird.release();
      bSlot.release();
    } finally {
      await server.restart();
    }

    // Back to one limit: a still holds one slot, b one (taken locally, now leased in Redis too).
    expect(await eventually(() => a.stats().limiter === "redis" && b.stats().limiter === "redis" && c.stats().limiter === "redis", 3000)).toBe(true);
    expect(modes).toEqual(["local (redis unreachable)", "redis"]);
    expect(await eventually(async () => (await inRedis()).leases === 2, 1500)).toBe(true);
    const waiter = enqueue(c);
    await waiter.inLine;
    expect(waiter.heard).toEqual([1]);
    aHeld[1]?.release();
    await waiter.slot;
  });

  it("starts without Redis: local limits (local) or 503 (closed) until it answers", async () => {
    freshKeys();
    const nowhere = "redis://127.0.0.1:9"; // the discard port: nothing listens
    const local = gateway({ redisUrl: nowhere });
    const closed = gateway({ redisUrl: nowhere, failureMode: "closed" });
    const startedAt = performance.now();
    const slot = await local.acquire(open());
    expect(performance.now() - startedAt).toBeLessThan(1000);
    expect(local.stats()).toEqual({ in_flight: 1, queued: 0, max_concurrent: 1, limiter: "local (redis unreachable)" });
    slot.release();
    expect(await codeOf(closed.acquire(open()))).toBe("limiter_unavailable");
  });
});

describe("Redis configuration", () => {
  it("defaults to no Redis, LEASE_TTL 15 s and the local failure mode", () => {
    expect(parseConfig({})).toMatchObject({ redisUrl: undefined, leaseTtlMs: 15_000, redisFailureMode: "local" });
    expect(parseConfig({ REDIS_URL: "redis://cache:6379/2", LEASE_TTL: "0.5", REDIS_FAILURE_MODE: "Closed" })).toMatchObject({
      redisUrl: "redis://cache:6379/2",
      leaseTtlMs: 500,
      redisFailureMode: "closed",
    });
  });

  it.each([
    ["REDIS_URL", "http://cache:6379", "must be a redis:// or rediss:// URL"],
    ["LEASE_TTL", "0", "greater than 0"],
    ["REDIS_FAILURE_MODE", "open", "must be local or closed"],
  ])("stops on %s=%s, naming the variable", (name, value, form) => {
    expect(() => parseConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => parseConfig({ [name]: value })).toThrow(new RegExp(`${name}=.*${form}`));
  });

  it("never shows the Redis password in a configuration error", () => {
    expect(() => parseConfig({ REDIS_URL: "http://:hunter2secret@cache:6379" })).toThrow(ConfigError);
    expect(() => parseConfig({ REDIS_URL: "http://:hunter2secret@cache:6379" })).not.toThrow(/hunter2secret/);
  });
});
