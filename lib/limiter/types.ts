/** Admission control: at most `maxConcurrent` generations in flight, a bounded FIFO queue in front; in-process or over Redis. */
export interface Limiter {
  /**
   * A slot once the request may go upstream; else `queue_full` at once,
   * `queue_timeout` after the queue timeout, the abort's as `signal` aborts.
   * While it waits, `onQueued` hears each new place in line (1 = next).
   */
  acquire(signal: AbortSignal, onQueued?: (position: number) => void): Promise<Slot>;
  stats(): LimiterStats;
  /** Admits at most this many from now on (never more than its maximum): what the GPU servers in rotation can take. */
  setCapacity?(capacity: number): void;
  /** At shutdown, after the requests in flight: lets go of shared state and connections. */
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

/** `redis`: one limit over every gateway; `local`: this instance's own. With Redis unreachable, REDIS_FAILURE_MODE says which stands in. */
export type LimiterMode = "redis" | "local" | "local (redis unreachable)" | "unavailable (redis unreachable)";
