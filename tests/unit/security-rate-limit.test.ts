import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GatewayError } from "@/lib/errors";
import { RateLimiter, quotaHeaders } from "@/lib/security/rate-limit";
import { startRedisServer } from "../redis-server";
import type { RedisServer } from "../redis-server";

async function refusal(limiter: RateLimiter, client: string, images = 1): Promise<GatewayError> {
  try {
    await limiter.take(client, images);
  } catch (error) {
    if (error instanceof GatewayError) return error;
    throw error;
  }
  throw new Error("expected a 429");
}

const limiters: RateLimiter[] = [];
function limiter(perMinute: number, options: { redisUrl?: string; windowSeconds?: number } = {}): RateLimiter {
  const made = new RateLimiter({ perMinute, ...options });
  limiters.push(made);
  return made;
}

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedisServer();
});
afterAll(async () => {
  await Promise.all(limiters.map((made) => made.close()));
  await redis.stop();
});

describe("RateLimiter (a minute's images per client, rate-limiter-flexible)", () => {
  it("is off at 0 per minute", () => {
    expect(limiter(0).enabled).toBe(false);
    expect(limiter(1).enabled).toBe(true);
  });

  it("lets a client take up to the limit, counting down Remaining, then answers 429 with Retry-After", async () => {
    const limits = limiter(3);
    expect(await limits.take("a")).toMatchObject({ limit: 3, remaining: 2 });
    expect(await limits.take("a")).toMatchObject({ limit: 3, remaining: 1 });
    const last = await limits.take("a");
    expect(last).toMatchObject({ limit: 3, remaining: 0 });
    expect(last.resetSeconds).toBeGreaterThan(55);
    const error = await refusal(limits, "a");
    expect(error).toMatchObject({ code: "rate_limited", status: 429 });
    expect(error.detail).toMatch(/^Rate limit of 3 images per minute reached; retry in (5\d|60) s \(RATE_LIMIT_PER_MINUTE\)$/);
    expect(error.headers).toMatchObject({ "RateLimit-Limit": "3", "RateLimit-Remaining": "0" });
    expect(Number(error.headers["Retry-After"])).toBeGreaterThan(55);
  });

  it("counts images: a request for n takes n, and one that does not fit what is left takes none", async () => {
    const limits = limiter(4);
    expect(await limits.take("a", 3)).toMatchObject({ remaining: 1 });
    const error = await refusal(limits, "a", 2);
    expect(error.detail).toMatch(/^Rate limit of 4 images per minute reached: 2 asked, 1 left; retry in/);
    expect(error.headers).toMatchObject({ "RateLimit-Remaining": "1" });
    await expect.poll(async () => (await limits.take("a", 1)).remaining).toBe(0);
  });

  it("gives the whole limit back when its window has passed", async () => {
    const limits = limiter(2, { windowSeconds: 1 });
    await limits.take("a", 2);
    await refusal(limits, "a");
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(await limits.take("a", 2)).toMatchObject({ remaining: 0 });
  });

  it("keeps clients apart", async () => {
    const limits = limiter(1);
    await limits.take("a");
    expect((await refusal(limits, "a")).code).toBe("rate_limited");
    expect((await limits.take("b")).remaining).toBe(0);
  });

  it("writes the IETF RateLimit fields", () => {
    expect(quotaHeaders({ limit: 5, remaining: 4, resetSeconds: 12 })).toEqual({
      "RateLimit-Limit": "5",
      "RateLimit-Remaining": "4",
      "RateLimit-Reset": "12",
    });
  });
});

describe("RateLimiter over Redis (REDIS_URL)", () => {
  it("counts one limit for every gateway that shares the Redis", async () => {
    const [a, b] = [limiter(3, { redisUrl: redis.url }), limiter(3, { redisUrl: redis.url })];
    // Until its connection is ready, a limiter counts in its process.
    await expect.poll(() => a.shared && b.shared, { timeout: 5000 }).toBe(true);
    const taken = [await a.take("c"), await b.take("c"), await a.take("c")];
    expect(taken.map((quota) => quota.remaining)).toEqual([2, 1, 0]);
    expect((await refusal(b, "c")).code).toBe("rate_limited");
    expect((await refusal(a, "c")).code).toBe("rate_limited");
  });

  it("counts in its process while Redis is unreachable, and in Redis again once it is back", async () => {
    const limits = limiter(2, { redisUrl: redis.url });
    await expect.poll(() => limits.shared, { timeout: 5000 }).toBe(true);
    await redis.stop();
    await expect.poll(() => limits.shared).toBe(false);
    expect(await limits.take("d")).toMatchObject({ remaining: 1 });
    await limits.take("d");
    expect((await refusal(limits, "d")).code).toBe("rate_limited");
    await redis.restart();
    const other = limiter(2, { redisUrl: redis.url });
    await expect.poll(() => limits.shared && other.shared, { timeout: 10_000 }).toBe(true);
    expect((await other.take("e")).remaining).toBe(1);
    expect((await limits.take("e")).remaining).toBe(0);
  });
});
