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
}

export interface Slot {
  /** Frees the slot. Safe to call more than once; only the first call counts. */
  release(): void;
}

export interface LimiterStats {
  in_flight: number;
  queued: number;
  max_concurrent: number;
}
