/**
 * The balancer over real UpstreamServers (undici pools) and in-process
 * emulators: pick order, weighting by available_slots, per-server caps,
 * ejection and its doubling, never ejecting the last server, and failover only
 * for calls that never reached a server.
 */
import { afterEach, describe, expect, it } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator, EmulatorOptions, Fault } from "../../emulator/server";
import { freePort } from "../proc";
import { ConfigError, parseConfig } from "@/lib/config";
import { GatewayError } from "@/lib/errors";
import { LocalLimiter } from "@/lib/limiter/local";
import type { GenerateRequest } from "@/lib/schemas";
import { Balancer } from "@/lib/upstream/balancer";
import type { BalancerOptions } from "@/lib/upstream/balancer";

const request: GenerateRequest = {
  prompt: "a lighthouse",
  negative_prompt: "",
  width: 256,
  height: 256,
  seed: 1,
  num_inference_steps: 6,
  guidance_scale: 0,
};

const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  await Promise.all(cleanup.splice(0).map((close) => close()));
});

async function emulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const started = await startEmulator({ stepMs: 1, ...options });
  cleanup.push(() => started.close());
  return started;
}

/** A loopback URL nobody listens on: connections to it are refused. */
async function deadUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}

function balancer(urls: string[], options: Partial<BalancerOptions> = {}): Balancer {
  const created = new Balancer(
    urls.map((url) => new URL(url)),
    {
      maxConcurrent: 10,
      requestTimeoutMs: 5000,
      maxResponseBytes: 10_000_000,
      maxConcurrentPerServer: 10,
      healthIntervalMs: 60_000,
      healthReuseMs: 1000,
      ejectAfterFailures: 3,
      ejectBaseMs: 10_000,
      ejectMaxMs: 300_000,
      ...options,
    },
  );
  cleanup.push(() => created.close());
  return created;
}

const signal = () => new AbortController().signal;
const generate = (target: Balancer, prompt = request.prompt) => target.generate({ ...request, prompt }, signal());

/** The error a call rejects with. */
async function failure(call: Promise<unknown>): Promise<GatewayError> {
  try {
    await call;
  } catch (error) {
    if (error instanceof GatewayError) return error;
    throw error;
  }
  throw new Error("the call succeeded");
}

async function waitUntil(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function state(target: Balancer, index: number) {
  const found = target.states()[index];
  if (!found) throw new Error(`no server ${index}`);
  return found;
}

/** A clock the test moves by hand. */
function manualClock(start = 1_700_000_000_000) {
  let now = start;
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe("pick order", () => {
  it("sends concurrent calls to the server with the fewest in flight", async () => {
    const [a, b] = await Promise.all([emulator({ stepMs: 20 }), emulator({ stepMs: 20 })]);
    const target = balancer([a.url, b.url]);
    const calls = Array.from({ length: 6 }, () => generate(target));
    expect(target.states().map((server) => server.in_flight)).toEqual([3, 3]);
    await Promise.all(calls);
    expect([a.stats().generateRequests, b.stats().generateRequests]).toEqual([3, 3]);
  });

  it("takes idle servers in turn whatever their slots, starting with the first", async () => {
    const [a, b] = await Promise.all([emulator({ slots: 2 }), emulator({ slots: 4 })]);
    const target = balancer([a.url, b.url]);
    await target.health();
    const order: string[] = [];
    for (let i = 0; i < 6; i++) {
      const before = a.stats().generateRequests;
      await generate(target);
      order.push(a.stats().generateRequests > before ? "a" : "b");
    }
    expect(order).toEqual(["a", "b", "a", "b", "a", "b"]);
  });

  it("weights by the available_slots each server's /health reports", async () => {
    const [big, small] = await Promise.all([emulator({ slots: 3, stepMs: 30 }), emulator({ slots: 1, stepMs: 30 })]);
    const target = balancer([small.url, big.url]);
    expect(target.states().map((server) => server.available_slots)).toEqual([null, null]);
    await target.health();
    expect(target.states().map((server) => server.available_slots)).toEqual([1, 3]);
    await Promise.all(Array.from({ length: 4 }, () => generate(target)));
    expect([small.stats().generateRequests, big.stats().generateRequests]).toEqual([1, 3]);
  });

  it("tries a server whose probe failed only when no healthy one is free", async () => {
    const [sick, well] = await Promise.all([emulator(), emulator({ slots: 1, stepMs: 30 })]);
    sick.setFault({ kind: "status", status: 503, detail: "loading", target: "health" });
    const target = balancer([sick.url, well.url], { maxConcurrentPerServer: 2 });
    await target.health();
    expect(target.states().map((server) => server.state)).toEqual(["down", "up"]);
    // Even with its one slot taken, the healthy server comes first while below its cap...
    await Promise.all([generate(target), generate(target)]);
    expect([sick.stats().generateRequests, well.stats().generateRequests]).toEqual([0, 2]);
    // ...and with both of its places taken, the third call goes to the down server rather than wait.
    await Promise.all(Array.from({ length: 3 }, () => generate(target)));
    expect([sick.stats().generateRequests, well.stats().generateRequests]).toEqual([1, 4]);
  });
});

describe("caps", () => {
  it("finds a server with room for each call the limiter admits up to capacity(): never more than maxConcurrentPerServer on one", async () => {
    const [a, b] = await Promise.all([emulator({ stepMs: 25 }), emulator({ stepMs: 25 })]);
    const target = balancer([a.url, b.url], { maxConcurrentPerServer: 2 });
    expect(target.capacity()).toBe(4);
    const limiter = new LocalLimiter({ maxConcurrent: 10, maxQueue: 10, queueTimeoutMs: 10_000 });
    limiter.setCapacity(target.capacity());
    const calls = Array.from({ length: 7 }, async () => target.generate(request, signal(), {}, await limiter.acquire(signal())));
    await new Promise((resolve) => setImmediate(resolve));
    expect(target.states().map((server) => server.in_flight)).toEqual([2, 2]);
    expect(limiter.stats()).toEqual({ in_flight: 4, queued: 3, max_concurrent: 4 });
    await Promise.all(calls);
    expect(Math.max(a.stats().maxConcurrent, b.stats().maxConcurrent)).toBe(2);
    expect(a.stats().generateRequests + b.stats().generateRequests).toBe(7);
    expect(target.states().map((server) => server.in_flight)).toEqual([0, 0]);
    expect(limiter.stats().in_flight).toBe(0);
  });

  it("frees a stream's place when its body ends or it is closed", async () => {
    const only = await emulator({ stepMs: 5 });
    const target = balancer([only.url]);
    const read = await target.generateStream(request, signal());
    expect(state(target, 0).in_flight).toBe(1);
    let text = "";
    for await (const chunk of read.chunks) text += chunk.toString();
    expect(text).toContain('"type": "complete"');
    expect(state(target, 0).in_flight).toBe(0);
    read.close();
    expect(state(target, 0).in_flight).toBe(0);

    const finished = await target.generateStream(request, signal());
    expect(state(target, 0).in_flight).toBe(1);
    finished.close(true); // the caller saw the server's last event
    expect(state(target, 0).in_flight).toBe(0);
  });
});

describe("orphaned generations", () => {
  const slot = () => {
    const held = {
      released: 0,
      release: () => {
        held.released++;
      },
    };
    return held;
  };
  const long = { ...request, num_inference_steps: 12 };

  it("a server that stops on a closed connection gets its place back at the first probe", async () => {
    const stopping = await emulator({ stepMs: 100, onDisconnect: "stop" });
    const target = balancer([stopping.url]);
    const held = slot();
    const client = new AbortController();
    const call = target.generate(long, client.signal, {}, held);
    await waitUntil(() => stopping.stats().work === 1);
    client.abort();
    expect((await failure(call)).code).toBe("client_closed");
    expect([held.released, state(target, 0).orphaned]).toEqual([0, 1]);
    const started = performance.now();
    await waitUntil(() => held.released === 1);
    expect(performance.now() - started).toBeLessThan(1000); // 1.2 s of steps were left
    expect(state(target, 0)).toMatchObject({ in_flight: 0, orphaned: 0 });
  });

  it("a server that runs it to its end (the genuine one) keeps the slot taken until it is done", async () => {
    const genuine = await emulator({ stepMs: 50, slots: 1 });
    const target = balancer([genuine.url]);
    const held = [slot(), slot()];
    const plain = new AbortController();
    const streamed = new AbortController();
    const call = target.generate(long, plain.signal, {}, held[0]);
    const stream = await target.generateStream(long, streamed.signal, {}, held[1]);
    await waitUntil(() => genuine.stats().work === 2);
    plain.abort();
    streamed.abort();
    stream.close(); // abandoned before its last event
    await call.catch(() => undefined);
    await waitUntil(() => genuine.stats().active === 0);
    expect(target.orphaned()).toBe(2);
    // 2 × 600 ms of work on one slot: the slots still taken are never fewer than the generations left.
    const taken = () => held.filter((h) => h.released === 0).length;
    while (genuine.stats().work > 0) {
      expect(taken()).toBeGreaterThanOrEqual(genuine.stats().work);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await waitUntil(() => taken() === 0, 2000);
    expect(held.map((h) => h.released)).toEqual([1, 1]);
    expect(target.orphaned()).toBe(0);
  });

  it("a generation the server timed out itself (its 504) keeps its slot until REQUEST_TIMEOUT: the server's load no longer counts it, but its GPU still runs it", async () => {
    // The genuine server's request_timeout: a 504 while its executor goes on generating, its semaphore released.
    const genuine = await emulator({ stepMs: 100, slots: 2, requestTimeoutMs: 200 });
    const target = balancer([genuine.url], { requestTimeoutMs: 1500 });
    const held = slot();
    const startedAt = performance.now();
    expect(await failure(target.generate(long, signal(), {}, held))).toMatchObject({ status: 504, detail: "Request timed out after 0.2 seconds" });
    expect(target.orphaned()).toBe(1);
    // The runaway takes 1.2 s; probes meanwhile show the server idle, which must not free the slot.
    while (genuine.stats().work > 0) {
      expect(held.released, "held while the GPU still runs it").toBe(0);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await waitUntil(() => held.released === 1, 2000);
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(1500);
    expect(target.orphaned()).toBe(0);
  });

  it("an orphan whose server never says it is done is let go after REQUEST_TIMEOUT", async () => {
    const genuine = await emulator({ stepMs: 200, slots: 1 });
    const target = balancer([genuine.url], { requestTimeoutMs: 400 });
    const held = slot();
    const client = new AbortController();
    const call = target.generate(long, client.signal, {}, held);
    await waitUntil(() => genuine.stats().work === 1);
    client.abort();
    await call.catch(() => undefined);
    await waitUntil(() => held.released === 1, 1000);
    expect(genuine.stats().work).toBe(1); // still generating, but REQUEST_TIMEOUT bounds the wait
  });
});

describe("ejection", () => {
  it("ejects after consecutive failures for a period that doubles up to the cap, and takes it back on a good probe", async () => {
    const [bad, good] = await Promise.all([emulator(), emulator()]);
    bad.setFault({ kind: "status", status: 500, detail: "CUDA error" });
    const clock = manualClock();
    const target = balancer([bad.url, good.url], { ejectAfterFailures: 2, ejectBaseMs: 10_000, ejectMaxMs: 25_000, now: clock.now });
    await target.health();

    const periods: number[] = [];
    for (let round = 0; round < 4; round++) {
      // Calls until `bad` has failed twice in a row; each 5xx is the caller's answer, not retried.
      while (state(target, 0).state !== "ejected") {
        await generate(target).catch((error: unknown) => {
          expect(error).toMatchObject({ status: 500 });
        });
      }
      const ejected = state(target, 0);
      expect(ejected.consecutive_failures).toBe(2);
      periods.push(Date.parse(ejected.ejected_until ?? "") - clock.now());

      // While out, nothing goes to it.
      const sent = bad.stats().generateRequests;
      for (let i = 0; i < 4; i++) await generate(target);
      expect(bad.stats().generateRequests).toBe(sent);

      // A good probe before the period is over does not bring it back; one after does.
      clock.advance((periods.at(-1) ?? 0) - 1000);
      await target.health();
      expect(state(target, 0).state).toBe("ejected");
      clock.advance(1000);
      await target.health();
      expect(state(target, 0)).toMatchObject({ state: "up", ejected_until: null, consecutive_failures: 0 });
    }
    expect(periods).toEqual([10_000, 20_000, 25_000, 25_000]);
    expect(state(target, 0).ejections).toBe(4);

    // Back in for as long as its last period lasted: the next ejection starts from the base again.
    clock.advance(25_000);
    while (state(target, 0).state !== "ejected") await generate(target).catch(() => undefined);
    expect(Date.parse(state(target, 0).ejected_until ?? "") - clock.now()).toBe(10_000);
  });

  it("tells its capacity, MAX_CONCURRENT_PER_SERVER for each server in rotation, as servers leave and return", async () => {
    const [bad, good] = await Promise.all([emulator(), emulator()]);
    bad.setFault({ kind: "status", status: 500, detail: "CUDA error" });
    const clock = manualClock();
    const heard: number[] = [];
    const target = balancer([bad.url, good.url], {
      maxConcurrentPerServer: 3,
      ejectAfterFailures: 1,
      ejectBaseMs: 10_000,
      now: clock.now,
      onCapacity: (capacity) => heard.push(capacity),
    });
    expect(target.capacity()).toBe(6);
    while (state(target, 0).state !== "ejected") await generate(target).catch(() => undefined);
    expect(target.capacity()).toBe(3);
    bad.setFault(null);
    clock.advance(10_000);
    await target.health();
    expect(state(target, 0).state).toBe("up");
    expect(heard).toEqual([3, 6]);
  });

  it("ejects a server that refuses its probes, with no traffic at all", async () => {
    const good = await emulator();
    const clock = manualClock();
    const target = balancer([await deadUrl(), good.url], { ejectAfterFailures: 2, now: clock.now });
    await target.health();
    expect(state(target, 0)).toMatchObject({ state: "down", consecutive_failures: 1 });
    clock.advance(1000);
    await target.health();
    expect(state(target, 0)).toMatchObject({ state: "ejected", consecutive_failures: 2 });
    expect(good.stats().generateRequests).toBe(0);
  });

  it("does not let good probes clear the count of failed calls", async () => {
    const [bad, good] = await Promise.all([emulator(), emulator()]);
    bad.setFault({ kind: "status", status: 500 });
    const clock = manualClock();
    const target = balancer([bad.url, good.url], { ejectAfterFailures: 3, now: clock.now });
    while (state(target, 0).state !== "ejected") {
      await generate(target).catch(() => undefined);
      clock.advance(1000);
      await target.health(); // a fresh, good probe of `bad` between every two calls
    }
    expect(bad.stats().generateRequests).toBe(3);
  });

  it("counts only failures in a row: a success in between starts the count again", async () => {
    const [flaky, good] = await Promise.all([emulator(), emulator()]);
    const target = balancer([flaky.url, good.url], { ejectAfterFailures: 2 });
    await target.health();
    /** Calls until one lands on `flaky`, which answers as `fault` says. */
    const onFlaky = async (fault: Fault | null) => {
      flaky.setFault(fault);
      for (;;) {
        const before = flaky.stats().generateRequests;
        await generate(target).catch(() => undefined);
        if (flaky.stats().generateRequests > before) return;
      }
    };
    const bad: Fault = { kind: "status", status: 502 };
    await onFlaky(bad);
    await onFlaky(null);
    await onFlaky(bad);
    expect(state(target, 0)).toMatchObject({ state: "up", consecutive_failures: 1 });
    // A 4xx is an answer from a working server, not a failure: the count starts again too.
    await onFlaky({ kind: "status", status: 429 });
    await onFlaky(bad);
    expect(state(target, 0)).toMatchObject({ state: "up", consecutive_failures: 1 });
  });

  it("never ejects the last server in rotation; with every server out, answers 503 at once", async () => {
    const [first, second] = [await deadUrl(), await deadUrl()];
    const target = balancer([first, second], { ejectAfterFailures: 1 });
    const started = performance.now();
    const error = await failure(generate(target));
    expect(error).toMatchObject({ status: 503, detail: "No text-to-image server is available" });
    const ejected = () => target.states().filter((server) => server.state === "ejected");
    expect(ejected()).toHaveLength(1);
    const left = target.states().find((server) => server.state !== "ejected");
    expect(left?.consecutive_failures).toBeGreaterThanOrEqual(1);

    // The ejected one is not tried again; the one left is, and refuses.
    const again = await failure(generate(target));
    expect(again.detail).toBe("No text-to-image server is available");
    expect(ejected()).toHaveLength(1);
    expect(target.states().find((server) => server.url === left?.url)).toMatchObject({
      consecutive_failures: (left?.consecutive_failures ?? 0) + 1,
      ejected_until: null,
    });
    expect(performance.now() - started).toBeLessThan(2000); // no timeout was waited for

    const health = await target.health();
    expect(health).toEqual({ ok: false, status: "unreachable", error: "No text-to-image server is available" });
  });
});

describe("failover", () => {
  it("tries another server when the connection was refused", async () => {
    const good = await emulator();
    const target = balancer([await deadUrl(), good.url]);
    const answer = JSON.parse((await generate(target)).toString()) as Record<string, unknown>;
    expect(answer.image_base64).toMatch(/^data:image\/jpeg;base64,/);
    expect(good.stats().generateRequests).toBe(1);
    expect(state(target, 0).consecutive_failures).toBeGreaterThanOrEqual(1);
    expect(target.states().map((server) => server.in_flight)).toEqual([0, 0]);
  });

  it("tries another server when a stream's connection was refused", async () => {
    const good = await emulator();
    const target = balancer([await deadUrl(), good.url]);
    const response = await target.generateStream(request, signal());
    let text = "";
    for await (const chunk of response.chunks) text += chunk.toString();
    response.close();
    expect(text).toContain('"type": "complete"');
    expect(good.stats().generateRequests).toBe(1);
  });

  it("never replays a call that reached a server: a reset before the answer is a 502", async () => {
    const [resetting, other] = await Promise.all([emulator(), emulator()]);
    resetting.setFault({ kind: "reset_before_headers" });
    const target = balancer([resetting.url, other.url]);
    const error = await failure(generate(target));
    expect(error).toMatchObject({ status: 502, detail: "Connection to the text-to-image server was lost" });
    expect([resetting.stats().generateRequests, other.stats().generateRequests]).toEqual([1, 0]);
    expect(state(target, 0).consecutive_failures).toBe(1);
  });

  it("never replays a stream cut after it started", async () => {
    const [cutting, other] = await Promise.all([emulator(), emulator()]);
    cutting.setFault({ kind: "reset_mid_body" });
    const target = balancer([cutting.url, other.url]);
    const response = await target.generateStream(request, signal());
    const read = async () => {
      let bytes = 0;
      for await (const chunk of response.chunks) bytes += chunk.length;
      return bytes;
    };
    expect(await failure(read())).toMatchObject({ status: 502 });
    response.close();
    expect([cutting.stats().generateRequests, other.stats().generateRequests]).toEqual([1, 0]);
    expect(state(target, 0)).toMatchObject({ consecutive_failures: 1 });
    // Cut short, the call may still run there: its place is held until the server's load shows it done.
    await waitUntil(() => state(target, 0).in_flight === 0);
    expect(state(target, 0).orphaned).toBe(0);
  });

  it("never replays a 5xx answer", async () => {
    const [failing, other] = await Promise.all([emulator(), emulator()]);
    failing.setFault({ kind: "status", status: 500, detail: "CUDA error" });
    const target = balancer([failing.url, other.url]);
    expect(await failure(generate(target))).toMatchObject({ status: 500, detail: "Text-to-image server error: CUDA error" });
    expect(other.stats().generateRequests).toBe(0);
  });
});

describe("the GPU server's own refusals", () => {
  it.each([404, 405])("an upstream %i (a wrong TEXT2IMAGE_SERVER_URL, or another server) is a 502 naming it, counted toward ejection", async (status) => {
    const [wrong, right] = await Promise.all([emulator(), emulator()]);
    wrong.setFault({ kind: "status", status, detail: status === 404 ? "Not Found" : "Method Not Allowed" });
    const target = balancer([wrong.url, right.url], { ejectAfterFailures: 2 });
    const errors: GatewayError[] = [];
    for (let call = 0; call < 10 && state(target, 0).state !== "ejected"; call++) {
      await generate(target).catch((error: unknown) => {
        if (error instanceof GatewayError) errors.push(error);
      });
    }
    expect(state(target, 0).state).toBe("ejected");
    expect(errors).toHaveLength(2);
    for (const error of errors) {
      expect(error).toMatchObject({ status: 502, code: "upstream_status" });
      expect(error.detail).toMatch(new RegExp(`answered HTTP ${status}`));
    }
  });

  it("an upstream 503 without Retry-After gets the gateway's own estimate", async () => {
    const busy = await emulator();
    busy.setFault({ kind: "status", status: 503, detail: "Request queue is full (max 2). Please try again later." });
    const error = await failure(generate(balancer([busy.url])));
    expect(error).toMatchObject({ status: 503, detail: "Request queue is full (max 2). Please try again later." });
    expect(error.headers["Retry-After"]).toMatch(/^[1-9]\d*$/);
  });
});

describe("one server", () => {
  it("passes its failures through unchanged and never ejects it", async () => {
    const url = await deadUrl();
    const target = balancer([url], { ejectAfterFailures: 1 });
    for (let i = 0; i < 3; i++) {
      expect(await failure(generate(target))).toMatchObject({
        status: 503,
        detail: `Text-to-image server ${url} is unreachable: connection refused`,
      });
    }
    expect(state(target, 0)).toMatchObject({ state: "up", consecutive_failures: 3, ejected_until: null });
  });

  it("answers health with the server's own answer, one call for every caller within a second", async () => {
    const only = await emulator();
    const target = balancer([only.url]);
    const answers = await Promise.all(Array.from({ length: 20 }, () => target.health()));
    expect(answers[0]).toMatchObject({ ok: true, health: { status: "healthy", available_slots: 4 } });
    await target.health();
    expect(only.stats().healthRequests).toBe(1);
    expect(target.publicUrl).toBe(only.url);
  });
});

describe("health and metrics of several servers", () => {
  it("sums the servers in rotation and lists each one without credentials", async () => {
    const [a, b] = await Promise.all([emulator({ slots: 3 }), emulator({ slots: 1 })]);
    const withCredentials = new URL(a.url);
    withCredentials.username = "gpu";
    withCredentials.password = "secret";
    const target = balancer([withCredentials.href, b.url]);
    expect(target.publicUrl).toBe(`${a.url},${b.url}`);
    const health = await target.health();
    expect(health).toEqual({
      ok: true,
      health: {
        status: "healthy",
        model_loaded: true,
        cuda_available: true,
        current_queue_size: 0,
        active_generations: 0,
        available_slots: 4,
      },
    });
    expect(target.states()).toEqual([
      {
        url: a.url,
        state: "up",
        ejected_until: null,
        in_flight: 0,
        max_concurrent: 10,
        available_slots: 3,
        consecutive_failures: 0,
        ejections: 0,
        orphaned: 0,
        health: expect.objectContaining({ status: "healthy", available_slots: 3 }) as unknown,
      },
      expect.objectContaining({ url: b.url, state: "up", available_slots: 1 }),
    ]);
    expect(JSON.stringify(target.states())).not.toContain("secret");
  });

  it("asks each server once for every caller within healthReuseMs, and again after it", async () => {
    const [a, b] = await Promise.all([emulator(), emulator()]);
    const clock = manualClock();
    const target = balancer([a.url, b.url], { now: clock.now });
    await Promise.all(Array.from({ length: 20 }, () => target.health()));
    clock.advance(999);
    await target.health();
    expect([a.stats().healthRequests, b.stats().healthRequests]).toEqual([1, 1]);
    clock.advance(1);
    await target.health();
    expect([a.stats().healthRequests, b.stats().healthRequests]).toEqual([2, 2]);
  });

  it("probes in the background every healthIntervalMs once started, and not before", async () => {
    const a = await emulator();
    const target = balancer([a.url, await deadUrl()], { healthIntervalMs: 100 });
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(a.stats().healthRequests).toBe(0);
    await generate(target);
    await new Promise((resolve) => setTimeout(resolve, 450));
    expect(a.stats().healthRequests).toBeGreaterThanOrEqual(2); // one at the first call, then one per interval
    expect(a.stats().healthRequests).toBeLessThanOrEqual(6);
  });

  it("collects every server's metrics by URL, with an error for one that fails", async () => {
    const a = await emulator();
    const dead = await deadUrl();
    const target = balancer([a.url, dead]);
    const metrics = JSON.parse((await target.metrics()).toString()) as { servers: Record<string, unknown> };
    expect(Object.keys(metrics.servers)).toEqual([a.url, dead]);
    expect(metrics.servers[a.url]).toMatchObject({ total_requests: 0 });
    expect(metrics.servers[dead]).toEqual({ error: `Text-to-image server ${dead} is unreachable: connection refused` });
  });
});

describe("configuration of several servers", () => {
  it("reads TEXT2IMAGE_SERVER_URL as a comma-separated list, one URL as before", () => {
    expect(parseConfig({}).serverUrls.map((url) => url.href)).toEqual(["http://localhost:8001/"]);
    const several = parseConfig({ TEXT2IMAGE_SERVER_URL: " http://gpu-1:8001 ,http://u:p@gpu-2:8001/base," });
    expect(several.serverUrls.map((url) => url.href)).toEqual(["http://gpu-1:8001/", "http://u:p@gpu-2:8001/base"]);
    expect(several.serverUrl.href).toBe("http://gpu-1:8001/");
  });

  it("defaults the per-server cap to the gateway's total, and the probe and ejection timings", () => {
    expect(parseConfig({ MAX_CONCURRENT_REQUESTS: "6" })).toMatchObject({
      maxConcurrentPerServer: 6,
      healthIntervalMs: 5000,
      ejectAfterFailures: 3,
      ejectBaseMs: 10_000,
      ejectMaxMs: 300_000,
    });
    expect(parseConfig({ MAX_CONCURRENT_PER_SERVER: "2", EJECT_BASE_SECONDS: "0.5", HEALTH_INTERVAL: "0.2" })).toMatchObject({
      maxConcurrentPerServer: 2,
      ejectBaseMs: 500,
      healthIntervalMs: 200,
    });
  });

  it.each([
    ["http://gpu-1:8001,gpu-2:8001", /TEXT2IMAGE_SERVER_URL=.*each comma-separated entry must be an http:\/\/ or https:\/\/ URL; "gpu-2:8001" is not/],
    ["http://gpu-1:8001,http://gpu-1:8001/", /TEXT2IMAGE_SERVER_URL=.*lists "http:\/\/gpu-1:8001\/" twice/],
    [" , ", /TEXT2IMAGE_SERVER_URL=.*must be an http:\/\/ or https:\/\/ URL/],
  ])("stops on TEXT2IMAGE_SERVER_URL=%j", (value, message) => {
    expect(() => parseConfig({ TEXT2IMAGE_SERVER_URL: value })).toThrow(ConfigError);
    expect(() => parseConfig({ TEXT2IMAGE_SERVER_URL: value })).toThrow(message);
  });

  it.each([["MAX_CONCURRENT_PER_SERVER", "0"], ["EJECT_AFTER_FAILURES", "1.5"], ["HEALTH_INTERVAL", "-1"], ["EJECT_BASE_SECONDS", "soon"]])(
    "stops on %s=%s",
    (name, value) => {
      expect(() => parseConfig({ [name]: value })).toThrow(new RegExp(`${name}="${value.replace(".", "\\.")}"`));
    },
  );
});
