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

/** The RateLimit-* fields of an answer that took `images`, by name. */
async function quota(limiter: RateLimiter, client: string, images = 1): Promise<Record<string, string>> {
  return Object.fromEntries(await limiter.take(client, images));
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
  it("is off at 0 per minute: no RateLimit fields, no refusal", async () => {
    const off = limiter(0);
    for (let i = 0; i < 3; i++) expect(await off.take("a", 100)).toEqual([]);
    expect(await quota(limiter(1), "a")).toMatchObject({ "RateLimit-Limit": "1", "RateLimit-Remaining": "0" });
  });

  it("lets a client take up to the limit, counting down Remaining, then answers 429 with Retry-After", async () => {
    const limits = limiter(3);
    expect(await quota(limits, "a")).toMatchObject({ "RateLimit-Limit": "3", "RateLimit-Remaining": "2" });
    expect(await quota(limits, "a")).toMatchObject({ "RateLimit-Limit": "3", "RateLimit-Remaining": "1" });
    const last = await quota(limits, "a");
    expect(last).toMatchObject({ "RateLimit-Limit": "3", "RateLimit-Remaining": "0" });
    expect(Number(last["RateLimit-Reset"])).toBeGreaterThan(55);
    const error = await refusal(limits, "a");
    expect(error).toMatchObject({ code: "rate_limited", status: 429 });
    expect(error.detail).toMatch(/^Rate limit of 3 images per minute reached; retry in (5\d|60) s \(RATE_LIMIT_PER_MINUTE\)$/);
    expect(error.headers).toMatchObject({ "RateLimit-Limit": "3", "RateLimit-Remaining": "0" });
    expect(Number(error.headers["Retry-After"])).toBeGreaterThan(55);
  });

  it("counts images: a request for n takes n, and one that does not fit what is left takes none", async () => {
    const limits = limiter(4);
    expect(await quota(limits, "a", 3)).toMatchObject({ "RateLimit-Remaining": "1" });
    const error = await refusal(limits, "a", 2);
    expect(error.detail).toMatch(/^Rate limit of 4 images per minute reached: 2 asked, 1 left; retry in/);
    expect(error.headers).toMatchObject({ "RateLimit-Remaining": "1" });
    await expect.poll(async () => (await quota(limits, "a", 1))["RateLimit-Remaining"]).toBe("0");
  });

  it("answers 400 on `n` for more images than a minute allows, taking none", async () => {
    const limits = limiter(2);
    await expect(limits.take("a", 3)).rejects.toMatchObject({ code: "invalid_parameter", status: 400, param: "n" });
    expect(await quota(limits, "a", 2)).toMatchObject({ "RateLimit-Remaining": "0" });
  });

  it("gives the whole limit back when its window has passed", async () => {
    const limits = limiter(2, { windowSeconds: 1 });
    await limits.take("a", 2);
    await refusal(limits, "a");
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(await quota(limits, "a", 2)).toMatchObject({ "RateLimit-Remaining": "0" });
  });

  it("keeps clients apart", async () => {
    const limits = limiter(1);
    await limits.take("a");
    expect((await refusal(limits, "a")).code).toBe("rate_limited");
    expect((await quota(limits, "b"))["RateLimit-Remaining"]).toBe("0");
  });

  it("writes the IETF RateLimit fields", () => {
    expect(quotaHeaders(5, 4, 12)).toEqual([
      ["RateLimit-Limit", "5"],
      ["RateLimit-Remaining", "4"],
      ["RateLimit-Reset", "12"],
    ]);
  });
});

describe("RateLimiter over Redis (REDIS_URL)", () => {
  it("counts one limit for every gateway that shares the Redis", async () => {
    const [a, b] = [limiter(3, { redisUrl: redis.url }), limiter(3, { redisUrl: redis.url })];
    // Until its connection is ready, a limiter counts in its process.
    await expect.poll(() => a.shared && b.shared, { timeout: 5000 }).toBe(true);
    const taken = [await quota(a, "c"), await quota(b, "c"), await quota(a, "c")];
    expect(taken.map((fields) => fields["RateLimit-Remaining"])).toEqual(["2", "1", "0"]);
    expect((await refusal(b, "c")).code).toBe("rate_limited");
    expect((await refusal(a, "c")).code).toBe("rate_limited");
  });

  it("counts in its process while Redis is unreachable, and in Redis again once it is back", async () => {
    const limits = limiter(2, { redisUrl: redis.url });
    await expect.poll(() => limits.shared, { timeout: 5000 }).toBe(true);
    await redis.stop();
    await expect.poll(() => limits.shared).toBe(false);
    expect(await quota(limits, "d")).toMatchObject({ "RateLimit-Remaining": "1" });
    await limits.take("d");
    expect((await refusal(limits, "d")).code).toBe("rate_limited");
    await redis.restart();
    const other = limiter(2, { redisUrl: redis.url });
    await expect.poll(() => limits.shared && other.shared, { timeout: 10_000 }).toBe(true);
    expect((await quota(other, "e"))["RateLimit-Remaining"]).toBe("1");
    expect((await quota(limits, "e"))["RateLimit-Remaining"]).toBe("0");
  });
});
