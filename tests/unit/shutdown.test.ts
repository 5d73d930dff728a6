import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "@/lib/config";
import { GatewayError, fail } from "@/lib/errors";
import { errorAnswer } from "@/lib/http";
import { LocalLimiter } from "@/lib/limiter/local";
import { Drain } from "@/lib/shutdown";

const open = () => new AbortController().signal;

function codeOf(value: unknown): string | undefined {
  return value instanceof GatewayError ? value.code : undefined;
}

describe("the shutting-down error", () => {
  it("is a 503 with its detail, Retry-After and Connection: close", async () => {
    const response = errorAnswer(fail.shuttingDown(), "request-1");
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({ detail: "Gateway is shutting down", request_id: "request-1" });
    expect(response.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(response.headers.get("connection")).toBe("close");
  });
});

describe("SHUTDOWN_GRACE", () => {
  it("defaults to 30 s and takes fractions", () => {
    expect(parseConfig({}).shutdownGraceMs).toBe(30_000);
    expect(parseConfig({ SHUTDOWN_GRACE: "1.5" }).shutdownGraceMs).toBe(1500);
    expect(parseConfig({ SHUTDOWN_GRACE: "" }).shutdownGraceMs).toBe(30_000);
  });

  it.each([["0"], ["-1"], ["soon"]])("rejects %j, naming the variable", (value) => {
    expect(() => parseConfig({ SHUTDOWN_GRACE: value })).toThrow(ConfigError);
    expect(() => parseConfig({ SHUTDOWN_GRACE: value })).toThrow(/SHUTDOWN_GRACE=/);
  });
});

describe("Drain", () => {
  it("with nothing in flight, is done at once, and admits nothing after", async () => {
    const drain = new Drain();
    expect(drain.draining).toBe(false);
    expect(await drain.drain(10_000, 1000)).toBe("idle");
    expect(drain.draining).toBe(true);
    let refused: unknown;
    try {
      drain.beginWork(open());
    } catch (error) {
      refused = error;
    }
    expect(refused).toMatchObject({ code: "shutting_down", status: 503, detail: "Gateway is shutting down" });
    expect(drain.inFlight).toBe(0);
  });

  it("waits for the work in flight, without aborting it, until the last one is released", async () => {
    const drain = new Drain();
    const first = drain.beginWork(open());
    const second = drain.beginWork(open());
    let outcome: string | undefined;
    const drained = drain.drain(10_000, 1000).then((result) => (outcome = result));
    first.release();
    first.release(); // counted once
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(outcome).toBeUndefined();
    expect(drain.inFlight).toBe(1);
    expect(second.signal.aborted).toBe(false);
    second.release();
    expect(await drained).toBe("drained");
  });

  it("turns away the requests waiting for a slot with the 503, and leaves the running one alone", async () => {
    const limiter = new LocalLimiter({ maxConcurrent: 1, maxQueue: 5, queueTimeoutMs: 10_000 });
    const drain = new Drain();
    const running = drain.beginWork(open());
    await limiter.acquire(running.queueSignal);
    const waiting = drain.beginWork(open());
    const wait = limiter.acquire(waiting.queueSignal).then(
      () => "granted",
      (error: unknown) => codeOf(error),
    );
    expect(limiter.stats().queued).toBe(1);
    void drain.drain(10_000, 1000);
    expect(await wait).toBe("shutting_down");
    expect(limiter.stats().queued).toBe(0);
    expect(running.signal.aborted).toBe(false);
  });

  it("cuts off what still runs when the grace period ends, as the shutdown's 503", async () => {
    const drain = new Drain();
    const work = drain.beginWork(open());
    const startedAt = performance.now();
    const drained = drain.drain(50, 1000);
    await new Promise<void>((resolve) => {
      work.signal.addEventListener("abort", () => {
        resolve();
      });
    });
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(45);
    // The limiter and the upstream client classify an abort by its reason (fail.aborted): this one is the shutdown's.
    expect(codeOf(fail.aborted(work.signal.reason))).toBe("shutting_down");
    work.release();
    expect(await drained).toBe("cut_off");
  });

  it("gives up on work that does not end after the cut", async () => {
    const drain = new Drain();
    drain.beginWork(open());
    expect(await drain.drain(10, 10)).toBe("gave_up");
  });

  it("keeps a client's own disconnect the client's, during a drain too", async () => {
    const drain = new Drain();
    const client = new AbortController();
    const work = drain.beginWork(client.signal);
    const drained = drain.drain(20, 1000);
    client.abort();
    expect(work.signal.aborted).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 40)); // past the grace period
    expect(codeOf(fail.aborted(work.signal.reason))).toBe("client_closed");
    work.release();
    expect(await drained).toBe("cut_off");
  });

  it("aborts both signals of a client that has already gone", () => {
    const work = new Drain().beginWork(AbortSignal.abort());
    expect(work.queueSignal.aborted && work.signal.aborted).toBe(true);
    expect(codeOf(fail.aborted(work.signal.reason))).toBe("client_closed");
  });

  it("answers a repeated signal with the first drain's outcome", async () => {
    const drain = new Drain();
    const work = drain.beginWork(open());
    const first = drain.drain(10_000, 1000);
    const again = drain.drain(1, 1);
    work.release();
    expect(await again).toBe("drained");
    expect(await first).toBe("drained");
  });
});
