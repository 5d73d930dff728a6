/**
 * One limit over three gateways (`next start`) sharing a real redis-server:
 * the cap and FIFO under load, a gateway killed with SIGKILL, and Redis
 * stopped and started again. Gateways a and b fall back to local limits
 * (REDIS_FAILURE_MODE=local); c refuses new work instead (closed).
 */
import { afterAll, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { startRedisServer } from "../redis-server";
import type { RedisServer } from "../redis-server";
import { it } from "./fixtures";
import { call, eventually, postJson, streamGenerate } from "./harness";
import type { Gateway, JsonAnswer } from "./harness";

const LIMIT = 4;
const LEASE_TTL_MS = 1500;
const small = { prompt: "a lighthouse at dusk", width: 256, height: 256, num_inference_steps: 6 };

let redis: RedisServer;
let emulator: Emulator;
let a: Gateway;
let b: Gateway;
let c: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  redis = await startRedisServer();
  // Room for far more than the gateways may send: only the shared limit holds them back.
  emulator = await startEmulator({ stepMs: 20, slots: 64, maxQueue: 128 });
  const env = (failureMode: string) => ({
    TEXT2IMAGE_SERVER_URL: emulator.url,
    REDIS_URL: redis.url,
    REDIS_FAILURE_MODE: failureMode,
    LEASE_TTL: String(LEASE_TTL_MS / 1000),
    MAX_CONCURRENT_REQUESTS: String(LIMIT),
    MAX_QUEUE: "100",
    QUEUE_TIMEOUT: "20",
    REQUEST_TIMEOUT: "20",
  });
  [a, b, c] = await Promise.all([startFileGateway(env("local")), startFileGateway(env("local")), startFileGateway(env("closed"))]);
});

afterAll(async () => {
  await emulator.close();
  await redis.stop();
});

interface Health {
  status: string;
  in_flight: number;
  queued: number;
  limiter?: string;
}

async function health(gateway: Gateway): Promise<Health> {
  return (await call(`${gateway.url}/api/health`)).body as Health;
}

const generate = (gateway: Gateway, seed = -1) => postJson(`${gateway.url}/api/generate`, { ...small, seed });

/** A request to a gateway that may die under it: its answer, or 0 when the connection went. */
const generateOrLost = (gateway: Gateway) => generate(gateway).then((answer) => answer.status, () => 0);

const statuses = (answers: JsonAnswer[]) => answers.map((answer) => answer.status);

describe("one limit over three gateways", () => {
  it("sends at most MAX_CONCURRENT_REQUESTS in total to the GPU, in order, and answers all 60 requests", async () => {
    emulator.reset();
    emulator.setStepMs(20);
    const gateways = [a, b, c];
    const startedAt = performance.now();
    // Every sixth request streams, so the queue positions can be seen.
    const runs = Array.from({ length: 60 }, (_, i) => {
      const gateway = gateways[i % 3] as Gateway;
      if (i % 6 === 5) return streamGenerate(`${gateway.url}/api/generate-stream`, { ...small, seed: i }).then((run) => ({ status: run.response.status, events: run.events }));
      return generate(gateway, i).then((answer) => ({ status: answer.status, events: [] }));
    });
    const results = await Promise.all(runs);
    const seconds = (performance.now() - startedAt) / 1000;

    expect(results.map((result) => result.status)).toEqual(Array<number>(60).fill(200));
    const streams = results.filter((_, i) => i % 6 === 5);
    for (const stream of streams) {
      const types = stream.events.flatMap((event) => (event.data ? [event.data.type] : []));
      expect(types.at(-1)).toBe("complete");
      const positions = stream.events.flatMap((event) => (event.data?.type === "queued" ? [event.data.position as number] : []));
      // Each change of place is told, and a place only ever gets better.
      expect(positions).toEqual([...positions].sort((x, y) => y - x));
      expect(new Set(positions).size).toBe(positions.length);
    }
    const firstPositions = streams.flatMap((stream) => stream.events.filter((event) => event.data?.type === "queued").slice(0, 1).map((event) => event.data?.position as number));
    expect(firstPositions.length).toBeGreaterThan(0);

    const max = emulator.stats().maxConcurrent;
    console.log(
      `redis limiter: 60 requests over 3 gateways (limit ${LIMIT}): max ${max} at the GPU at once, all 200 in ${seconds.toFixed(1)} s; ` +
        `first queue positions told to streams: ${firstPositions.join(", ")}`,
    );
    expect(max).toBe(LIMIT);
    for (const gateway of gateways) {
      expect(await eventually(async () => {
        const now = await health(gateway);
        return now.in_flight === 0 && now.queued === 0 && now.limiter === "redis" && now.status === "healthy";
      })).toBe(true);
    }
  });

  it("frees a gateway's slots within LEASE_TTL after it is killed with SIGKILL, and the others go on", async () => {
    emulator.reset();
    emulator.setStepMs(500); // 3 s per generation: a's four are mid-way when it dies
    const dying = Array.from({ length: LIMIT }, () => generateOrLost(a));
    expect(await eventually(() => emulator.stats().active === LIMIT)).toBe(true);
    const waiting = [...Array.from({ length: 4 }, () => generate(b)), ...Array.from({ length: 4 }, () => generate(c))];
    // b and c see the global state: a's four slots taken, their eight in line.
    expect(await eventually(async () => {
      const now = await health(b);
      return now.in_flight === LIMIT && now.queued === 8;
    })).toBe(true);
    expect(emulator.stats().generateRequests).toBe(LIMIT);

    a.process.kill("SIGKILL");
    const killedAt = performance.now();
    expect(await Promise.all(dying)).toEqual([0, 0, 0, 0]);
    expect(await eventually(() => emulator.stats().active === 0)).toBe(true);
    emulator.reset(); // from here on, only b and c's requests
    expect(await eventually(() => emulator.stats().generateRequests > 0, LEASE_TTL_MS + 2000)).toBe(true);
    const freedMs = performance.now() - killedAt;
    emulator.setStepMs(20);

    expect(statuses(await Promise.all(waiting))).toEqual(Array<number>(8).fill(200));
    console.log(`redis limiter: slots of a gateway killed with SIGKILL were taken again after ${Math.round(freedMs)} ms (LEASE_TTL ${LEASE_TTL_MS} ms)`);
    expect(freedMs).toBeLessThan(LEASE_TTL_MS + 750);
    expect(emulator.stats().maxConcurrent).toBeLessThanOrEqual(LIMIT);
  });

  it("with Redis stopped, limits per gateway (local) or answers 503 (closed), and is global again once Redis is back", async () => {
    emulator.reset();
    emulator.setStepMs(500); // 3 s per generation: b's four still run when Redis stops
    const bFirst = Array.from({ length: 6 }, () => generate(b));
    expect(await eventually(() => emulator.stats().active === LIMIT)).toBe(true);
    const cFirst = Array.from({ length: 2 }, () => generate(c));
    expect(await eventually(async () => (await health(c)).queued === 4)).toBe(true);

    await redis.stop();
    // c's waiters are refused; b's move to b's own queue behind its four running slots.
    const refused = await Promise.all(cFirst);
    expect(statuses(refused)).toEqual([503, 503]);
    expect(refused[0]?.body).toEqual({ detail: "Concurrency limiter unavailable", request_id: expect.any(String) as unknown });
    expect(Number(refused[0]?.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(await health(b)).toMatchObject({ status: "degraded", limiter: "local (redis unreachable)" });
    expect(await health(c)).toMatchObject({ status: "degraded", limiter: "unavailable (redis unreachable)" });
    expect(emulator.stats().generateRequests).toBe(LIMIT);
    emulator.setStepMs(50);

    const during = await Promise.all([...Array.from({ length: 8 }, () => generate(b)), generate(c), generate(c)]);
    expect(statuses(await Promise.all(bFirst))).toEqual(Array<number>(6).fill(200));
    expect(statuses(during)).toEqual([...Array<number>(8).fill(200), 503, 503]);
    const maxDuring = emulator.stats().maxConcurrent;
    expect(maxDuring).toBeLessThanOrEqual(LIMIT); // only b serves, within its own limit

    await redis.restart();
    const restartedAt = performance.now();
    expect(await eventually(async () => {
      const [onB, onC] = await Promise.all([health(b), health(c)]);
      return onB.limiter === "redis" && onC.limiter === "redis" && onB.status === "healthy" && onC.status === "healthy";
    }, 5000)).toBe(true);
    const recoveryMs = performance.now() - restartedAt;

    emulator.reset();
    emulator.setStepMs(20);
    const after = await Promise.all(Array.from({ length: 20 }, (_, i) => generate(i % 2 ? b : c)));
    expect(statuses(after)).toEqual(Array<number>(20).fill(200));
    const maxAfter = emulator.stats().maxConcurrent;
    console.log(
      `redis limiter: Redis stopped: b (local) served with at most ${maxDuring} at once, c (closed) answered 503; ` +
        `global again ${Math.round(recoveryMs)} ms after Redis restarted, then at most ${maxAfter} at once over b and c`,
    );
    expect(maxAfter).toBe(LIMIT);
  });
});

describe("RATE_LIMIT_PER_MINUTE over gateways sharing a Redis", () => {
  it("counts one client's images once for every gateway: 3 of 8 requests alternating over two pass", async ({ startGateway }) => {
    const env = { TEXT2IMAGE_SERVER_URL: emulator.url, REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: "3", TRUST_PROXY: "1" };
    const [left, right] = await Promise.all([startGateway(env), startGateway(env)]);
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const gateway = i % 2 === 0 ? left : right;
      const answer = await postJson(`${gateway.url}/api/generate`, small, { headers: { "content-type": "application/json", "x-forwarded-for": "203.0.113.7" } });
      statuses.push(answer.status);
    }
    expect(statuses.filter((status) => status === 200)).toHaveLength(3);
    expect(statuses.slice(3)).toEqual([429, 429, 429, 429, 429]);
    // Another client has its own minute.
    expect((await postJson(`${right.url}/api/generate`, small, { headers: { "content-type": "application/json", "x-forwarded-for": "203.0.113.8" } })).status).toBe(200);
  });
});
