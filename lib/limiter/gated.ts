import { LocalLimiter } from "./local";
import type { LocalLimiterOptions } from "./local";
import type { RedisLimiter } from "./redis";
import type { Limiter, LimiterStats, Slot } from "./types";

/**
 * The shared limit behind this instance's own while its servers in rotation
 * can take fewer than MAX_CONCURRENT_REQUESTS: a local slot first, then a global
 * one, one QUEUE_TIMEOUT for both. Otherwise the gate is open and the shared FIFO is the only queue.
 */
export class GatedLimiter implements Limiter {
  private readonly gate: LocalLimiter;

  constructor(
    private readonly shared: RedisLimiter,
    private readonly options: LocalLimiterOptions,
  ) {
    this.gate = new LocalLimiter({ ...options, maxConcurrent: Infinity });
  }

  async acquire(signal: AbortSignal, onQueued?: (position: number) => void): Promise<Slot> {
    const deadline = Date.now() + this.options.queueTimeoutMs;
    const local = await this.gate.acquire(signal, onQueued);
    try {
      const global = await this.shared.acquire(signal, onQueued, deadline - Date.now());
      return {
        release: () => {
          global.release();
          local.release();
        },
      };
    } catch (error) {
      local.release();
      throw error;
    }
  }

  /** The shared limit's counts, with the requests waiting here for a local slot. */
  stats(): LimiterStats {
    const global = this.shared.stats();
    return { ...global, queued: global.queued + this.gate.stats().queued };
  }

  setCapacity(capacity: number): void {
    this.gate.setCapacity(capacity < this.options.maxConcurrent ? capacity : Infinity);
  }

  close(): Promise<void> {
    return this.shared.close();
  }
}
