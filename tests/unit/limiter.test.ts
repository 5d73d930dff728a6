import { describe, expect, it } from "vitest";
import { GatewayError } from "@/lib/errors";
import { LocalLimiter } from "@/lib/limiter/local";

const open = () => new AbortController().signal;

function codeOf(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "granted",
    (error: unknown) => (error instanceof GatewayError ? error.code : "unexpected"),
  );
}

describe("LocalLimiter", () => {
  it("grants up to maxConcurrent at once and queues the rest", async () => {
    const limiter = new LocalLimiter({ maxConcurrent: 2, maxQueue: 5, queueTimeoutMs: 10_000 });
    await limiter.acquire(open());
    await limiter.acquire(open());
    void limiter.acquire(open());
    expect(limiter.stats()).toEqual({ in_flight: 2, queued: 1, max_concurrent: 2 });
  });

  it("admits no more than its capacity, which follows the servers in rotation and never passes maxConcurrent", async () => {
    const limiter = new LocalLimiter({ maxConcurrent: 4, maxQueue: 5, queueTimeoutMs: 10_000 });
    limiter.setCapacity(2);
    const a = await limiter.acquire(open());
    const b = await limiter.acquire(open());
    const waiting = [limiter.acquire(open()), limiter.acquire(open()), limiter.acquire(open())];
    expect(limiter.stats()).toEqual({ in_flight: 2, queued: 3, max_concurrent: 2 });
    // A server back in rotation: room for more, at once.
    limiter.setCapacity(3);
    const c = await waiting[0];
    expect(limiter.stats()).toEqual({ in_flight: 3, queued: 2, max_concurrent: 3 });
    // One out again: what runs runs on; a freed slot is not handed over until the rest fits.
    limiter.setCapacity(1);
    a.release();
    b.release();
    expect(limiter.stats()).toEqual({ in_flight: 1, queued: 2, max_concurrent: 1 });
    c?.release();
    await waiting[1];
    expect(limiter.stats()).toEqual({ in_flight: 1, queued: 1, max_concurrent: 1 });
    limiter.setCapacity(99);
    expect(limiter.stats()).toMatchObject({ in_flight: 2, queued: 0, max_concurrent: 4 });
    await waiting[2];
  });

  it("serves waiters in arrival order as slots free up", async () => {
    const limiter = new LocalLimiter({ maxConcurrent: 1, maxQueue: 5, queueTimeoutMs: 10_000 });
    const first = await limiter.acquire(open());
    const order: number[] = [];
    const waiting = [1, 2, 3].map((n) => limiter.acquire(open()).then((slot) => (order.push(n), slot)));
    first.release();
    (await waiting[0])?.release();
    (await waiting[1])?.release();
    (await waiting[2])?.release();
    expect(order).toEqual([1, 2, 3]);
    expect(limiter.stats()).toMatchObject({ in_flight: 0, queued: 0 });
  });

  it("answers queue_full past maxQueue", async () => {
    const limiter = new LocalLimiter({ maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 10_000 });
    await limiter.acquire(open());
    void limiter.acquire(open());
    expect(await codeOf(limiter.acquire(open()))).toBe("queue_full");
  });

  it("answers queue_timeout after the queue timeout and leaves the queue", async () => {
    const limiter = new LocalLimiter({ maxConcurrent: 1, maxQueue: 5, queueTimeoutMs: 30 });
    await limiter.acquire(open());
    expect(await codeOf(limiter.acquire(open()))).toBe("queue_timeout");
    expect(limiter.stats().queued).toBe(0);
  });

  it("drops a waiter whose client disconnects, at once", async () => {
    const limiter = new LocalLimiter({ maxConcurrent: 1, maxQueue: 5, queueTimeoutMs: 10_000 });
    const held = await limiter.acquire(open());
    const client = new AbortController();
    const waiting = codeOf(limiter.acquire(client.signal));
    client.abort();
    expect(await waiting).toBe("client_closed");
    expect(limiter.stats()).toMatchObject({ in_flight: 1, queued: 0 });
    held.release();
    expect(limiter.stats().in_flight).toBe(0);
  });

  it("refuses an already aborted request without taking a slot", async () => {
    const limiter = new LocalLimiter({ maxConcurrent: 1, maxQueue: 5, queueTimeoutMs: 10_000 });
    expect(await codeOf(limiter.acquire(AbortSignal.abort()))).toBe("client_closed");
    expect(limiter.stats().in_flight).toBe(0);
  });

  it("counts a slot released twice only once", async () => {
    const limiter = new LocalLimiter({ maxConcurrent: 2, maxQueue: 5, queueTimeoutMs: 10_000 });
    const slot = await limiter.acquire(open());
    await limiter.acquire(open());
    slot.release();
    slot.release();
    expect(limiter.stats().in_flight).toBe(1);
  });

  it("does not let a newcomer overtake the queue when a slot frees", async () => {
    const limiter = new LocalLimiter({ maxConcurrent: 1, maxQueue: 5, queueTimeoutMs: 10_000 });
    const held = await limiter.acquire(open());
    let waiterGranted = false;
    const waiter = limiter.acquire(open()).then((slot) => ((waiterGranted = true), slot));
    held.release();
    const newcomer = codeOf(limiter.acquire(open()));
    (await waiter).release();
    expect(waiterGranted).toBe(true);
    expect(await newcomer).toBe("granted");
  });

  it("tells each waiter its place in line whenever it changes, and never an admitted request", async () => {
    const limiter = new LocalLimiter({ maxConcurrent: 1, maxQueue: 5, queueTimeoutMs: 10_000 });
    const heard: string[] = [];
    const held = await limiter.acquire(open(), (p) => heard.push(`held ${p}`));
    const a = limiter.acquire(open(), (p) => heard.push(`a ${p}`));
    const bClient = new AbortController();
    const b = codeOf(limiter.acquire(bClient.signal, (p) => heard.push(`b ${p}`)));
    void limiter.acquire(open(), (p) => heard.push(`c ${p}`));
    bClient.abort();
    await b;
    held.release();
    await a;
    expect(heard).toEqual(["a 1", "b 2", "c 3", "c 2", "c 1"]);
  });
});
