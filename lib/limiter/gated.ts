import { fail } from "../errors";
import type { LocalLimiter } from "./local";
import type { RedisLimiter } from "./redis";
import type { Limiter, LimiterStats, Slot } from "./types";

/**
 * The shared limit (Redis) behind this instance's own: a request first takes
 * a local slot, so this gateway never admits more than the GPU servers in
 * rotation can take from it (MAX_CONCURRENT_PER_SERVER × servers, following
 * ejections) nor more than MAX_CONCURRENT_REQUESTS, then a global one. One
 * QUEUE_TIMEOUT bounds both waits. While Redis is unreachable (`local`), the
 * local slot is the whole limit.
 */
export class GatedLimiter implements Limiter {
  constructor(
    private readonly gate: LocalLimiter,
    private readonly shared: RedisLimiter,
    private readonly queueTimeoutMs: number,
  ) {}

  async acquire(signal: AbortSignal, onQueued?: (position: number) => void): Promise<Slot> {
    const timedOut = new AbortController();
    const timer = setTimeout(() => {
      timedOut.abort(fail.queueTimeout(this.queueTimeoutMs));
    }, this.queueTimeoutMs);
    const local = await this.gate.acquire(signal, onQueued).catch((error: unknown) => {
      clearTimeout(timer);
      throw error;
    });
    try {
      const global = await this.shared.acquire(AbortSignal.any([signal, timedOut.signal]), onQueued);
      return {
        release: () => {
          global.release();
          local.release();
        },
      };
    } catch (error) {
      local.release();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The global counts while Redis serves (with the requests waiting here for a local slot), else this instance's. */
  stats(): LimiterStats {
    const global = this.shared.stats();
    const local = this.gate.stats();
    if (global.limiter === "redis") return { ...global, queued: global.queued + local.queued };
    return { ...local, limiter: global.limiter };
  }

  setCapacity(capacity: number): void {
    this.gate.setCapacity(capacity);
  }

  close(): Promise<void> {
    return this.shared.close();
  }
}
