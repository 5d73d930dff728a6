/**
 * Admission control: at most `maxConcurrent` generations in flight to the GPU,
 * a bounded FIFO queue in front. The in-process version is `LocalLimiter`; a
 * shared (Redis) one can implement the same interface.
 */
export interface Limiter {
  /**
   * Resolves with a slot once the request may go upstream. Rejects with a
   * GatewayError: `queue_full` at once, `queue_timeout` after the queue timeout,
   * `client_closed` as soon as `signal` aborts. While the request waits,
   * `onQueued` hears its place in line (1 = next) each time it changes; a
   * request admitted at once never hears it.
   */
  acquire(signal: AbortSignal, onQueued?: (position: number) => void): Promise<Slot>;
  stats(): LimiterStats;
  /**
   * Admits at most this many from now on (never more than its maximum): the
   * GPU servers in rotation can take no more. The in-process limiter has it;
   * the Redis one's limit spans gateways and stays as it is.
   */
  setCapacity?(capacity: number): void;
  /**
   * At shutdown, after the requests in flight are done: lets go of shared
   * state and connections (the Redis limiter has some; the local one none).
   */
  close?(): Promise<void>;
}

export interface Slot {
  /** Frees the slot. Safe to call more than once; only the first call counts. */
  release(): void;
}

export interface LimiterStats {
  in_flight: number;
  queued: number;
  max_concurrent: number;
  /** How admission works now; only the Redis limiter says (the local one leaves it out). */
  limiter?: LimiterMode;
}

/**
 * `redis`: one limit over every gateway sharing the Redis. `local`: this
 * instance's own limit. With REDIS_URL set and Redis unreachable, either the
 * local limit stands in or new work is refused, as REDIS_FAILURE_MODE says.
 */
export type LimiterMode = "redis" | "local" | "local (redis unreachable)" | "unavailable (redis unreachable)";
