import { afterAll, beforeEach, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { call, postJson } from "./harness";
import type { Gateway } from "./harness";

const small = { prompt: "a quiet harbour", width: 256, height: 256, num_inference_steps: 6 };

let emulator: Emulator;
let gateway: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  // The emulator has room for more than the gateway may send: only the gateway limits here.
  emulator = await startEmulator({ stepMs: 20, slots: 32, maxQueue: 64 });
  gateway = await startFileGateway({
    TEXT2IMAGE_SERVER_URL: emulator.url,
    MAX_CONCURRENT_REQUESTS: "3",
    MAX_QUEUE: "10",
    QUEUE_TIMEOUT: "2",
    REQUEST_TIMEOUT: "5",
  });
});

afterAll(() => emulator.close());

beforeEach(() => {
  emulator.reset();
  emulator.setStepMs(20);
});

async function load() {
  const health = (await call(`${gateway.url}/api/health`)).body as { in_flight: number; queued: number };
  return { in_flight: health.in_flight, queued: health.queued };
}

describe("the concurrency cap", () => {
  it("sends at most MAX_CONCURRENT_REQUESTS to the GPU server and answers everyone", async () => {
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => postJson(`${gateway.url}/api/generate`, { ...small, seed: i })));
    expect(answers.map((answer) => answer.status)).toEqual(Array<number>(12).fill(200));
    expect(emulator.stats().maxConcurrent).toBe(3);
    expect(await load()).toEqual({ in_flight: 0, queued: 0 });
  });

  it("rejects past MAX_QUEUE with 503, Retry-After and the original gateway's words", async () => {
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
