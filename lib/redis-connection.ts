/**
 * How every Redis client of the gateway connects (the limiter, the rate limit,
 * the job store): an outage is a failure within a round trip, never a hang.
 */
import type { Redis, RedisOptions } from "ioredis";

/** A script that has not answered in this long counts as Redis being unreachable. */
export const COMMAND_TIMEOUT_MS = 1000;

/**
 * Commands fail at once instead of waiting in ioredis's offline queue: an outage
 * becomes the failure mode within a round trip, not a hang (ioredis reconnects
 * meanwhile). Its command timeout is a backstop; `COMMAND_TIMEOUT_MS` decides.
 */
export const REDIS_CONNECTION: RedisOptions = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  connectTimeout: 5000,
  commandTimeout: 10 * COMMAND_TIMEOUT_MS,
  autoResubscribe: false,
  retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
};

/**
 * Resolves once `client` is ready, or after `ms`: commands do not wait in
 * ioredis's offline queue, so the first ones of a process wait for its first
 * connection here, a moment at most (an outage later is never waited for).
 */
export function connectedWithin(client: Redis, ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (client.status === "ready") {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      client.off("ready", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    client.once("ready", done);
  });
}
