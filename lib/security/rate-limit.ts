import { fail } from "../errors";

const WINDOW_MS = 60_000;
/** Floating-point slack, so a bucket refilled for exactly one request's time counts as holding one. */
const EPSILON = 1e-9;
/** Beyond this many tracked clients, the oldest entries are dropped (they start afresh: lenient, never wrong the other way). */
const DEFAULT_MAX_CLIENTS = 100_000;

interface Bucket {
  tokens: number;
  at: number;
}

/** The outcome of one request's check, as the IETF RateLimit-* header fields say it. */
export interface Quota {
  limit: number;
  remaining: number;
  /** Seconds until the whole limit is available again. */
  resetSeconds: number;
}

export interface RateLimiterOptions {
  perMinute: number;
  maxClients?: number;
  /** The clock, in milliseconds; tests pass their own. */
  now?: () => number;
}

/**
 * RATE_LIMIT_PER_MINUTE images per client, in this process: a token bucket of
 * `perMinute` refilled at `perMinute` a minute (a burst up to the limit, then one
 * each 60/limit s). O(1) memory per client; full buckets are swept each minute.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;
  private readonly maxClients: number;
  private readonly now: () => number;
  private sweptAt: number;

  constructor(private readonly options: RateLimiterOptions) {
    this.perMs = options.perMinute / WINDOW_MS;
    this.maxClients = options.maxClients ?? DEFAULT_MAX_CLIENTS;
    this.now = options.now ?? (() => performance.now());
    this.sweptAt = this.now();
  }

  get enabled(): boolean {
    return this.options.perMinute > 0;
  }

  get perMinute(): number {
    return this.options.perMinute;
  }

  /**
   * Takes `images` from `client`'s bucket, as OpenAI's images-per-minute limit
   * counts: its quota, or a 429 GatewayError with Retry-After, taking none.
   */
  take(client: string, images = 1): Quota {
    const limit = this.options.perMinute;
    const now = this.now();
    this.sweep(now);
    const bucket = this.buckets.get(client) ?? this.track(client, now);
    bucket.tokens = Math.min(limit, bucket.tokens + (now - bucket.at) * this.perMs);
    bucket.at = now;
    if (bucket.tokens + EPSILON >= images) {
      bucket.tokens = Math.max(0, bucket.tokens - images);
      return this.quota(bucket);
    }
    const quota = this.quota(bucket);
    const retryAfter = Math.max(1, Math.ceil((images - bucket.tokens) / this.perMs / 1000));
    throw fail.rateLimited(limit, retryAfter, quotaHeaders(quota), images === 1 ? undefined : { asked: images, left: quota.remaining });
  }

  /** Clients tracked now (for tests and the curious). */
  get size(): number {
    return this.buckets.size;
  }

  private quota(bucket: Bucket): Quota {
    const limit = this.options.perMinute;
    return {
      limit,
      remaining: Math.floor(bucket.tokens + EPSILON),
      resetSeconds: Math.ceil((limit - bucket.tokens) / this.perMs / 1000 - EPSILON),
    };
  }

  private track(client: string, now: number): Bucket {
    while (this.buckets.size >= this.maxClients) {
      const oldest = this.buckets.keys().next();
      if (oldest.done) break;
      this.buckets.delete(oldest.value);
    }
    const bucket = { tokens: this.options.perMinute, at: now };
    this.buckets.set(client, bucket);
    return bucket;
  }

  /** Drops the buckets that have refilled: they hold nothing a fresh bucket would not. */
  private sweep(now: number): void {
    if (now - this.sweptAt < WINDOW_MS) return;
    this.sweptAt = now;
    const limit = this.options.perMinute;
    for (const [client, bucket] of this.buckets) {
      if (bucket.tokens + (now - bucket.at) * this.perMs >= limit) this.buckets.delete(client);
    }
  }
}

/** The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers, separate-field form). */
export function quotaHeaders(quota: Quota): Record<string, string> {
  return {
    "RateLimit-Limit": String(quota.limit),
    "RateLimit-Remaining": String(quota.remaining),
    "RateLimit-Reset": String(quota.resetSeconds),
  };
}
