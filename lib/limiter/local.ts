import { fail } from "../errors";
import type { Limiter, LimiterStats, Slot } from "./types";

interface Waiter {
  grant(): void;
  onQueued: ((position: number) => void) | undefined;
  position: number;
}

export interface LocalLimiterOptions {
  maxConcurrent: number;
  maxQueue: number;
  queueTimeoutMs: number;
}

/** In-process limiter: a counter and a FIFO of waiters. */
export class LocalLimiter implements Limiter {
  private inFlight = 0;
  /** MAX_CONCURRENT_REQUESTS, or less while the GPU servers in rotation can take less (setCapacity). */
  private capacity: number;
  // A Set keeps insertion order (FIFO) and lets a waiter that gives up leave in O(1).
  private readonly waiters = new Set<Waiter>();

  constructor(private readonly options: LocalLimiterOptions) {
    this.capacity = options.maxConcurrent;
  }

  /** Admits at most `capacity` from now on: waiters go in when it grows; when it shrinks, freed slots are kept until it fits. */
  setCapacity(capacity: number): void {
    this.capacity = Math.max(1, Math.min(capacity, this.options.maxConcurrent));
    this.admit();
  }

  /** `timeoutMs`: how long it may wait, QUEUE_TIMEOUT unless the caller has spent part of it already. */
  acquire(signal: AbortSignal, onQueued?: (position: number) => void, timeoutMs = this.options.queueTimeoutMs): Promise<Slot> {
    if (signal.aborted) return Promise.reject(fail.aborted(signal.reason));
    if (this.inFlight < this.capacity && this.waiters.size === 0) return Promise.resolve(this.take());
    if (this.waiters.size >= this.options.maxQueue) return Promise.reject(fail.queueFull());

    return new Promise<Slot>((resolve, reject) => {
      const leave = () => {
        this.waiters.delete(waiter);
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        this.announcePositions();
      };
      const waiter: Waiter = {
        grant: () => {
          const slot = this.take();
          leave();
          resolve(slot);
        },
        onQueued,
        position: 0,
      };
      const onAbort = () => {
        leave();
        reject(fail.aborted(signal.reason));
      };
      const timer = setTimeout(() => {
        leave();
        reject(fail.queueTimeout(this.options.queueTimeoutMs));
      }, timeoutMs);
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiters.add(waiter);
      this.announcePositions();
    });
  }

  /** A slot now, room or not: the Redis limiter counts here each slot it holds, so that an outage finds them counted. */
  take(): Slot {
    this.inFlight++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.inFlight--;
        this.admit();
      },
    };
  }

  /** Grants the oldest waiters the room there is; after a release in the same turn, so in_flight never dips and newcomers cannot jump the queue. */
  private admit(): void {
    while (this.inFlight < this.capacity) {
      const next = this.waiters.values().next();
      if (next.done) break;
      next.value.grant();
    }
  }

  /** Tells each waiter whose place in line changed where it stands now. */
  private announcePositions(): void {
    let position = 0;
    for (const waiter of this.waiters) {
      position++;
      if (waiter.position === position) continue;
      waiter.position = position;
      waiter.onQueued?.(position);
    }
  }

  stats(): LimiterStats {
    return { in_flight: this.inFlight, queued: this.waiters.size, max_concurrent: this.capacity };
  }
}
