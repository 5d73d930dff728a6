import { describe, expect, it } from "vitest";
import { GatewayError } from "@/lib/errors";
import { RateLimiter, quotaHeaders } from "@/lib/security/rate-limit";

function clock() {
  let now = 1_000_000;
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

function refusal(limiter: RateLimiter, client: string, images = 1): GatewayError {
  try {
    limiter.take(client, images);
  } catch (error) {
    if (error instanceof GatewayError) return error;
    throw error;
  }
  throw new Error("expected a 429");
}

describe("RateLimiter (token bucket per client)", () => {
  it("is off at 0 per minute", () => {
    expect(new RateLimiter({ perMinute: 0 }).enabled).toBe(false);
    expect(new RateLimiter({ perMinute: 1 }).enabled).toBe(true);
  });

  it("lets a client burst up to the limit, counting down Remaining, then answers 429 with Retry-After", () => {
    const time = clock();
    const limiter = new RateLimiter({ perMinute: 3, now: time.now });
    expect(limiter.take("a")).toEqual({ limit: 3, remaining: 2, resetSeconds: 20 });
    expect(limiter.take("a")).toEqual({ limit: 3, remaining: 1, resetSeconds: 40 });
    expect(limiter.take("a")).toEqual({ limit: 3, remaining: 0, resetSeconds: 60 });
    const error = refusal(limiter, "a");
    expect(error).toMatchObject({ code: "rate_limited", status: 429 });
    expect(error.detail).toBe("Rate limit of 3 images per minute reached; retry in 20 s (RATE_LIMIT_PER_MINUTE)");
    expect(error.headers).toEqual({ "Retry-After": "20", "RateLimit-Limit": "3", "RateLimit-Remaining": "0", "RateLimit-Reset": "60" });
  });

  it("refills at the limit per minute: one more request each 60/limit seconds", () => {
    const time = clock();
    const limiter = new RateLimiter({ perMinute: 3, now: time.now });
    for (let i = 0; i < 3; i++) limiter.take("a");
    time.advance(19_000);
    expect(refusal(limiter, "a").headers["Retry-After"]).toBe("1");
    time.advance(1_000);
    expect(limiter.take("a").remaining).toBe(0);
    time.advance(60_000);
    expect(limiter.take("a").remaining).toBe(2); // full again, never more than the limit
  });

  it("counts images: a request for n takes n, and one that does not fit the tokens left takes none", () => {
    const time = clock();
    const limiter = new RateLimiter({ perMinute: 4, now: time.now });
    expect(limiter.take("a", 3)).toMatchObject({ remaining: 1 });
    const error = refusal(limiter, "a", 2);
    expect(error.detail).toBe("Rate limit of 4 images per minute reached: 2 asked, 1 left; retry in 15 s (RATE_LIMIT_PER_MINUTE)");
    expect(error.headers).toMatchObject({ "Retry-After": "15", "RateLimit-Remaining": "1" });
    expect(limiter.take("a", 1)).toMatchObject({ remaining: 0 });
    time.advance(30_000);
    expect(limiter.take("a", 2)).toMatchObject({ remaining: 0 });
  });

  it("keeps clients apart", () => {
    const time = clock();
    const limiter = new RateLimiter({ perMinute: 1, now: time.now });
    limiter.take("a");
    expect(refusal(limiter, "a").code).toBe("rate_limited");
    expect(limiter.take("b").remaining).toBe(0);
  });

  it("refused requests do not use up the quota", () => {
    const time = clock();
    const limiter = new RateLimiter({ perMinute: 2, now: time.now });
    limiter.take("a");
    limiter.take("a");
    for (let i = 0; i < 10; i++) refusal(limiter, "a");
    time.advance(30_000);
    expect(limiter.take("a").remaining).toBe(0);
  });

  it("forgets idle clients once a minute and never tracks more than maxClients", () => {
    const time = clock();
    const limiter = new RateLimiter({ perMinute: 10, maxClients: 100, now: time.now });
    for (let i = 0; i < 250; i++) limiter.take(`client-${i}`);
    expect(limiter.size).toBe(100);
    time.advance(61_000);
    limiter.take("late");
    expect(limiter.size).toBe(1);
  });

  it("writes the IETF RateLimit fields", () => {
    expect(quotaHeaders({ limit: 5, remaining: 4, resetSeconds: 12 })).toEqual({
      "RateLimit-Limit": "5",
      "RateLimit-Remaining": "4",
      "RateLimit-Reset": "12",
    });
  });
});
