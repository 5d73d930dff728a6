import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { call, eventually, postJson, startGateway } from "./harness";
import type { Gateway } from "./harness";

const small = { prompt: "a quiet harbour", width: 256, height: 256, num_inference_steps: 6 };

let emulator: Emulator;
let gateway: Gateway;

beforeAll(async () => {
  // The emulator has room for more than the gateway may send: only the gateway limits here.
  emulator = await startEmulator({ stepMs: 20, slots: 32, maxQueue: 64 });
  gateway = await startGateway({
    TEXT2IMAGE_SERVER_URL: emulator.url,
    MAX_CONCURRENT_REQUESTS: "3",
    MAX_QUEUE: "10",
    QUEUE_TIMEOUT: "2",
    REQUEST_TIMEOUT: "5",
  });
});

afterAll(async () => {
  await gateway.stop();
  await emulator.close();
});

beforeEach(() => {
  emulator.reset();
  emulator.setStepMs(20);
});

async function load() {
  const health = (await call(`${gateway.url}/api/health`)).body as { in_flight: number; queued: number };
  return { in_flight: health.in_flight, queued: health.queued };
}

const idle = async () => {
  const now = await load();
  return now.in_flight === 0 && now.queued === 0;
};

describe("the concurrency cap", () => {
  it("sends at most MAX_CONCURRENT_REQUESTS to the GPU server and answers everyone", async () => {
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => postJson(`${gateway.url}/api/generate`, { ...small, seed: i })));
    expect(answers.map((answer) => answer.status)).toEqual(Array<number>(12).fill(200));
    expect(emulator.stats().maxConcurrent).toBe(3);
    expect(await load()).toEqual({ in_flight: 0, queued: 0 });
  });

  it("rejects past MAX_QUEUE with 503, Retry-After and the seed's words", async () => {
    // 6 steps of 40 ms: the first three still run when all sixteen have arrived,
    // and the ten queued are done in four rounds, well within QUEUE_TIMEOUT.
    emulator.setStepMs(40);
    const answers = await Promise.all(Array.from({ length: 16 }, () => postJson(`${gateway.url}/api/generate`, small)));
    const rejected = answers.filter((answer) => answer.status === 503);
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(13);
    expect(rejected).toHaveLength(3);
    for (const answer of rejected) {
      expect(answer.body).toEqual({ detail: "Gateway queue is full", request_id: expect.any(String) as unknown });
      expect(Number(answer.headers.get("retry-after"))).toBeGreaterThan(0);
    }
    expect(emulator.stats().generateRequests).toBe(13);
  });

  it("gives up on a queued request after QUEUE_TIMEOUT with 503", async () => {
    emulator.setStepMs(600); // 6 steps: 3.6 s per generation, longer than QUEUE_TIMEOUT (2 s)
    const answers = await Promise.all(Array.from({ length: 4 }, () => postJson(`${gateway.url}/api/generate`, small)));
    const timedOut = answers.filter((answer) => answer.status === 503);
    expect(timedOut).toHaveLength(1);
    expect(timedOut[0]?.body).toEqual({ detail: "No generation slot became free within 2 s (QUEUE_TIMEOUT)", request_id: expect.any(String) as unknown });
    expect(emulator.stats().generateRequests).toBe(3);
  });
});

describe("client disconnects", () => {
  it.each([["/api/generate"], ["/generate"]])("on %s abort the upstream generation within a second and free the slot", async (path) => {
    emulator.setStepMs(1000);
    const clients = Array.from({ length: 3 }, () => new AbortController());
    const pending = clients.map((client) =>
      fetch(`${gateway.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(small),
        signal: client.signal,
      }).catch(() => "aborted"),
    );
    expect(await eventually(() => emulator.stats().active === 3)).toBe(true);
    const abortedAt = performance.now();
    for (const client of clients) client.abort();
    expect(await Promise.all(pending)).toEqual(["aborted", "aborted", "aborted"]);
    expect(await eventually(() => emulator.stats().aborted === 3, 1000)).toBe(true);
    expect(performance.now() - abortedAt).toBeLessThan(1000);
    expect(await eventually(idle)).toBe(true);

    emulator.setStepMs(1);
    const next = await postJson(`${gateway.url}/api/generate`, small);
    expect(next.status).toBe(200);
  });

  it("take a queued request out of the queue at once, without reaching the GPU", async () => {
    emulator.setStepMs(300);
    const running = Array.from({ length: 3 }, () => postJson(`${gateway.url}/api/generate`, small));
    expect(await eventually(() => emulator.stats().active === 3)).toBe(true);
    const client = new AbortController();
    const queued = fetch(`${gateway.url}/api/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(small),
      signal: client.signal,
    }).catch(() => "aborted");
    expect(await eventually(async () => (await load()).queued === 1)).toBe(true);
    client.abort();
    expect(await queued).toBe("aborted");
    expect(await eventually(async () => (await load()).queued === 0, 1000)).toBe(true);
    await Promise.all(running);
    expect(emulator.stats().generateRequests).toBe(3);
    expect(await load()).toEqual({ in_flight: 0, queued: 0 });
  });
});

describe("a storm of mixed faults", () => {
  it("leaves no slot taken and no request queued", async () => {
    emulator.setStepMs(2);
    const faults = ["", "[[fault:reset_mid_body]]", "[[fault:status:500]]", "[[fault:malformed_json]]", "[[fault:reset_before_headers]]", "[[fault:missing_image]]", "[[fault:status:503]]", "[[fault:latency:40]]"];
    const statuses = new Map<number, number>();
    let next = 0;
    // 12 clients at a time, 240 requests; every 9th client gives up after 20 ms.
    const worker = async () => {
      while (next < 240) {
        const i = next++;
        const prompt = `storm ${i} ${faults[i % faults.length] ?? ""}`;
        const signal = i % 9 === 8 ? AbortSignal.timeout(20) : undefined;
        const status = await postJson(`${gateway.url}/api/generate`, { ...small, prompt }, { signal }).then(
          (answer) => answer.status,
          () => 0,
        );
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: 12 }, worker));
    expect([...statuses.keys()].sort()).toEqual([0, 200, 500, 502, 503]);
    expect(await eventually(idle)).toBe(true);
    expect(await eventually(() => emulator.stats().active === 0)).toBe(true);
    // Still serving, at full capacity.
    const after = await Promise.all(Array.from({ length: 3 }, () => postJson(`${gateway.url}/api/generate`, small)));
    expect(after.map((answer) => answer.status)).toEqual([200, 200, 200]);
  });
});
