import { Redis } from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { RateLimiterAbstract } from "rate-limiter-flexible";
import { fail } from "../errors";
import { REDIS_CONNECTION, connectedWithin } from "../redis-connection";

const WINDOW_S = 60;

/** The outcome of one request's check, as the IETF RateLimit-* header fields say it. */
interface Quota {
  limit: number;
  remaining: number;
  /** Seconds until the whole limit is available again. */
  resetSeconds: number;
}

interface RateLimiterOptions {
  perMinute: number;
  /** Counted in this Redis, one count for every gateway that shares it; else in this process. */
  redisUrl?: string | undefined;
  /** The window's length: a minute; tests shorten it. */
  windowSeconds?: number;
}

/**
 * RATE_LIMIT_PER_MINUTE images per client and minute, with
 * rate-limiter-flexible: in Redis when REDIS_URL is set, so every gateway that
 * shares it counts against one limit (with a limiter in this process standing
 * in while Redis is unreachable, as its insurance), else in this process. A
 * fixed window of a minute per client.
 */
export class RateLimiter {
  private readonly limiter: RateLimiterAbstract;
  private readonly client: Redis | undefined;
  private readonly firstConnection: Promise<void> | undefined;

  constructor(private readonly options: RateLimiterOptions) {
    const window = { points: Math.max(options.perMinute, 1), duration: options.windowSeconds ?? WINDOW_S };
    if (options.redisUrl === undefined || options.perMinute === 0) {
      this.limiter = new RateLimiterMemory(window);
      return;
    }
    this.client = new Redis(options.redisUrl, REDIS_CONNECTION);
    this.firstConnection = connectedWithin(this.client, CONNECT_WAIT_MS);
    // An unreachable Redis is the insurance limiter's to count, not an error for every request.
    this.client.on("error", () => undefined);
    this.limiter = new RateLimiterRedis({
      ...window,
      storeClient: this.client,
      keyPrefix: "t2i:rate",
      rejectIfRedisNotReady: true,
      insuranceLimiter: new RateLimiterMemory(window),
    });
  }

  get enabled(): boolean {
    return this.options.perMinute > 0;
  }

  get perMinute(): number {
    return this.options.perMinute;
  }

  /** Whether the count is Redis's now, shared by every gateway on it (else this process's, while Redis is unreachable or not set). */
  get shared(): boolean {
    return this.client?.status === "ready";
  }

  /**
   * Takes `images` from `client`'s minute, as OpenAI's images-per-minute limit
   * counts: its quota, or a 429 GatewayError with Retry-After, taking none.
   */
  async take(client: string, images = 1): Promise<Quota> {
    const limit = this.options.perMinute;
    await this.connected();
    try {
      const taken = await this.limiter.consume(client, images);
      return { limit, remaining: Math.max(0, taken.remainingPoints), resetSeconds: Math.max(0, Math.ceil(taken.msBeforeNext / 1000)) };
    } catch (refusal) {
      if (!(refusal instanceof RateLimiterRes)) throw fail.internal(refusal);
      // What this request added goes back: a refused request takes nothing.
      void this.limiter.reward(client, images).catch(() => undefined);
      const left = Math.max(0, limit - (refusal.consumedPoints - images));
      const retryAfter = Math.max(1, Math.ceil(refusal.msBeforeNext / 1000));
      const headers = quotaHeaders({ limit, remaining: left, resetSeconds: retryAfter });
      throw fail.rateLimited(limit, retryAfter, headers, images === 1 ? undefined : { asked: images, left });
    }
  }

  /**
   * The first connection, waited for a moment (the gateway just started), so
   * the first requests count in Redis too; an outage later is never waited for.
   */
  connected(): Promise<void> {
    return this.firstConnection ?? Promise.resolve();
  }

  async close(): Promise<void> {
    if (this.client && this.client.status !== "end") await this.client.quit().catch(() => undefined);
  }
}

const CONNECT_WAIT_MS = 1000;

/** The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers, separate-field form). */
export function quotaHeaders(quota: Quota): Record<string, string> {
  return {
    "RateLimit-Limit": String(quota.limit),
    "RateLimit-Remaining": String(quota.remaining),
    "RateLimit-Reset": String(quota.resetSeconds),
  };
}
