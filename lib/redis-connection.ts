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
 * Resolves once `client` is ready, or after `ms`, or (`orFailed`) once its
 * first attempt to connect has failed: commands do not wait in ioredis's
 * offline queue, so the first ones of a process wait for its first connection
 * here, a moment at most (an outage later is never waited for). As in
 * `within`, the limit yields to I/O already read: a connection made while the
 * event loop was stalled still counts.
 */
export function connectedWithin(client: Redis, ms: number, { orFailed = false } = {}): Promise<void> {
  if (client.status === "ready") return Promise.resolve();
  return new Promise((resolve) => {
    const failed = () => {
      if (client.status !== "ready") done();
    };
    const done = () => {
      clearTimeout(timer);
      client.off("ready", done).off("error", failed).off("close", failed);
      resolve();
    };
    // Waited for by requests, which keep the process alive; the timer alone must not.
    const timer = setTimeout(() => setImmediate(done), ms).unref();
    client.once("ready", done);
    if (orFailed) client.on("error", failed).on("close", failed);
  });
}

/**
 * Rejects when `promise` has not settled within `ms`, but only after the event
 * loop has read the I/O waiting (setImmediate runs after the poll phase): a reply
 * that came while the loop was stalled still counts, and no outage is made up.
 */
export function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      setImmediate(() => {
        reject(new Error(`Redis did not answer within ${ms} ms`));
      });
    }, ms);
    promise
      .then(resolve, (error: unknown) => {
        reject(error instanceof Error ? error : new Error(String(error)));
      })
      .finally(() => {
        clearTimeout(timer);
      });
  });
}
