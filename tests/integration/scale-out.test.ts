import { afterAll, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { ConcurrencyGauge, Emulator } from "../../emulator/server";
import { startRedisServer } from "../redis-server";
import type { RedisServer } from "../redis-server";
import { it } from "./fixtures";
import { postJson } from "./harness";
import type { Gateway } from "./harness";

/** The whole topology of the README's "Scaling out": 3 gateways, 2 GPU servers, 1 Redis. */
const LIMIT = 4;
const small = { prompt: "a harbour at night", width: 256, height: 256, num_inference_steps: 6 };

let redis: RedisServer;
let emulators: Emulator[];
let gateways: Gateway[];
const gauge: ConcurrencyGauge = { active: 0, max: 0 };

it.beforeAll(async ({ startFileGateway }) => {
  redis = await startRedisServer();
  // Each GPU server has room for far more than the limit: only the shared limit holds the gateways back.
  emulators = await Promise.all([0, 1].map(() => startEmulator({ stepMs: 20, slots: 64, maxQueue: 128, gauge })));
  const env = {
    TEXT2IMAGE_SERVER_URL: emulators.map((emulator) => emulator.url).join(","),
    REDIS_URL: redis.url,
    LEASE_TTL: "2",
    MAX_CONCURRENT_REQUESTS: String(LIMIT),
    MAX_QUEUE: "100",
    QUEUE_TIMEOUT: "30",
    REQUEST_TIMEOUT: "30",
  };
  gateways = await Promise.all([0, 1, 2].map(() => startFileGateway(env)));
});

afterAll(async () => {
  await Promise.all(emulators.map((emulator) => emulator.close()));
  await redis.stop();
});

describe("3 gateways, 2 GPU servers, 1 Redis", () => {
  it("keep the GPU servers' combined concurrency within the global limit and answer all 60 requests", async () => {
    const startedAt = performance.now();
    const answers = await Promise.all(
      Array.from({ length: 60 }, (_, i) => postJson(`${(gateways[i % 3] as Gateway).url}/api/generate`, { ...small, seed: i })),
    );
    const seconds = (performance.now() - startedAt) / 1000;
    const statuses = answers.map((answer) => answer.status);
    console.log(
      `scale-out: 60 requests over 3 gateways and 2 GPU servers (global limit ${LIMIT}): combined max ${gauge.max} at once, ` +
        `${statuses.filter((status) => status === 200).length} × 200 in ${seconds.toFixed(1)} s, ` +
        `split ${emulators.map((emulator) => emulator.stats().generateRequests).join("/")}`,
    );
    expect(statuses).toEqual(Array<number>(60).fill(200));
    expect(gauge.max).toBeLessThanOrEqual(LIMIT);
    expect(gauge.max).toBeGreaterThan(1);
    for (const emulator of emulators) expect(emulator.stats().generateRequests).toBeGreaterThan(0);
  });
});
