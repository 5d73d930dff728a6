import { Redis } from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { RateLimiterAbstract } from "rate-limiter-flexible";
import { fail } from "../errors";
import { REDIS_CONNECTION, connectedWithin } from "../redis-connection";
import type { HeaderList } from "./cors";

const WINDOW_S = 60;
const CONNECT_WAIT_MS = 1000;

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
  /**
   * The first connection, waited for a moment (the gateway just started), so
   * the first requests count in Redis too; an outage later is never waited for.
   */
  readonly connected: Promise<void> | undefined;

  constructor(private readonly options: RateLimiterOptions) {
    const window = { points: Math.max(options.perMinute, 1), duration: options.windowSeconds ?? WINDOW_S };
    if (options.redisUrl === undefined || options.perMinute === 0) {
      this.limiter = new RateLimiterMemory(window);
      return;
    }
    this.client = new Redis(options.redisUrl, REDIS_CONNECTION);
    this.connected = connectedWithin(this.client, CONNECT_WAIT_MS);
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

  /** Whether the count is Redis's now, shared by every gateway on it (else this process's, while Redis is unreachable or not set). */
  get shared(): boolean {
    return this.client?.status === "ready";
  }

  /**
   * Takes `images` from `client`'s minute, as OpenAI's images-per-minute limit
   * counts: the RateLimit-* fields of its answer (none with no limit set), or a
   * 429 GatewayError with Retry-After, taking none. More images than a minute
   * allows are a 400 on the one door that asks for several (OpenAI's `n`).
   */
  async take(client: string, images = 1): Promise<HeaderList> {
    const limit = this.options.perMinute;
    if (limit === 0) return [];
    if (images > limit) throw fail.invalidParameter("n", `${images} images are more than RATE_LIMIT_PER_MINUTE allows in a minute (${limit})`);
    await this.connected;
    try {
      const taken = await this.limiter.consume(client, images);
      return quotaHeaders(limit, Math.max(0, taken.remainingPoints), Math.max(0, Math.ceil(taken.msBeforeNext / 1000)));
    } catch (refusal) {
      if (!(refusal instanceof RateLimiterRes)) throw fail.internal(refusal);
      // What this request added goes back: a refused request takes nothing.
      void this.limiter.reward(client, images).catch(() => undefined);
      const left = Math.max(0, limit - (refusal.consumedPoints - images));
      const retryAfter = Math.max(1, Math.ceil(refusal.msBeforeNext / 1000));
      const headers = Object.fromEntries(quotaHeaders(limit, left, retryAfter));
      throw fail.rateLimited(limit, retryAfter, headers, images === 1 ? undefined : { asked: images, left });
    }
  }

  async close(): Promise<void> {
    if (this.client && this.client.status !== "end") await this.client.quit().catch(() => undefined);
  }
}

/** The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers, separate-field form); the reset is in seconds, until the whole limit is back. */
export function quotaHeaders(limit: number, remaining: number, resetSeconds: number): HeaderList {
  return [
    ["RateLimit-Limit", String(limit)],
    ["RateLimit-Remaining", String(remaining)],
    ["RateLimit-Reset", String(resetSeconds)],
  ];
}
