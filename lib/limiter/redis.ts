import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { Redis } from "ioredis";
import type { Result } from "ioredis";
import { fail } from "../errors";
import type { GatewayError } from "../errors";
import { COMMAND_TIMEOUT_MS, REDIS_CONNECTION, connectedWithin, within } from "../redis-connection";
import { LocalLimiter } from "./local";
import type { LocalLimiterOptions } from "./local";
import { SYNC, limiterKeys } from "./redis-scripts";
import type { LimiterKeys } from "./redis-scripts";
import type { Limiter, LimiterMode, LimiterStats, Slot } from "./types";

declare module "ioredis" {
  interface RedisCommander<Context> {
    /** SYNC (./redis-scripts.ts), defined on the limiter's connection. */
    limiterSync(...keysAndArgs: (string | number)[]): Result<unknown, Context>;
  }
}

export interface RedisLimiterOptions extends LocalLimiterOptions {
  redisUrl: string;
  /** A slot whose gateway stops renewing it (a crash) is free again after this long. */
  leaseTtlMs: number;
  /** Redis unreachable: `local` limits this instance alone, `closed` refuses new work. */
  failureMode: "local" | "closed";
  /** Every gateway sharing one limit uses the same prefix (tests use their own). */
  keyPrefix?: string;
  /** How often a waiting request asks Redis for its turn, besides when told of a change. */
  pollMs?: number;
  /** Hears each change of mode, e.g. to log that Redis went away (with the error) or came back. */
  onModeChange?: (mode: LimiterMode, cause: unknown) => void;
}

const DEFAULT_KEY_PREFIX = "text2image-gateway:limiter";
const DEFAULT_POLL_MS = 100;
/** The longest a gateway goes without renewing its leases and refreshing its counts. */
const IDLE_SYNC_MS = 1000;
/** stats() asks for fresh counts when the ones it has are older than this. */
const STALE_COUNTS_MS = 500;
/** Ids kept to remove from Redis once it answers again; past this, the leases' own expiry does it. */
const MAX_FORGET = 10_000;

interface Waiter {
  /** Its place in line as last told; 0 until Redis has answered for it (a newcomer). */
  position: number;
  /** A round trip's result for it: 0 granted, -1 the queue is full, else its place in line. */
  answer(result: number): void;
  /** Redis went away while it waited (it waits locally instead, or fails when `closed`), or the limiter closed. */
  moveOut(): void;
}

function stillWanted(signal: AbortSignal): void {
  if (signal.aborted) throw fail.aborted(signal.reason);
}

/**
 * One concurrency limit over every gateway sharing a Redis: slots are leases
 * their gateway renews, waiters form one FIFO across gateways, and a gateway
 * makes one round trip (SYNC) for all its leases and waiters, newcomers
 * included: at once when a request comes, gives up or lets go of its slot,
 * every `pollMs` while it has waiters, else at most a second apart, and at once
 * when another publishes a change. While Redis is unreachable a LocalLimiter
 * stands in (`closed`: new work is refused); global limiting resumes when it can.
 */
export class RedisLimiter implements Limiter {
  private readonly client: Redis;
  private readonly subscriber: Redis;
  private readonly keys: LimiterKeys;
  private readonly instanceId = `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
  /** Counts every slot held here, however granted, so that it is the whole limit at once when Redis goes away. */
  private readonly local: LocalLimiter;
  private readonly pollMs: number;
  private readonly waiters = new Map<string, Waiter>();
  /** The slots held here: their leases are renewed by every round trip. */
  private readonly held = new Set<string>();
  /** Ids let go that may be in Redis (leases, queue entries): the next round trip that answers removes them. */
  private readonly forget = new Set<string>();
  private counter = 0;
  private counts = { inFlight: 0, queued: 0, at: 0 };
  /** The round trip under way: never two at once; `again` asks for one more right after it. */
  private syncing: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Until the first connection attempt ends, requests wait for it rather than fall back. */
  private settled = false;
  private readonly firstOutcome: Promise<void>;
  private commandFailing = false;
  private lastError: unknown;
  private mode: LimiterMode = "redis";

  constructor(private readonly options: RedisLimiterOptions) {
    this.keys = limiterKeys(options.keyPrefix ?? DEFAULT_KEY_PREFIX);
    this.local = new LocalLimiter(options);
    this.pollMs = Math.min(options.pollMs ?? DEFAULT_POLL_MS, options.leaseTtlMs / 3);
    this.client = new Redis(options.redisUrl, REDIS_CONNECTION);
    // ioredis sends it by its SHA-1, and its source to a Redis that has not seen it (a new connection, a restarted Redis).
    this.client.defineCommand("limiterSync", { numberOfKeys: this.keys.keys.length, lua: SYNC });
    // ioredis reports a connection that cannot be made within connectTimeout; the wait's own limit is a last resort.
    this.firstOutcome = connectedWithin(this.client, (REDIS_CONNECTION.connectTimeout ?? 0) + 1000, { orFailed: true }).then(() => {
      this.settled = true;
      this.refreshMode();
    });
    this.client.on("ready", () => {
      this.commandFailing = false;
      this.refreshMode();
      this.tick();
    });
    this.client.on("error", (error: unknown) => {
      this.lastError = error;
      this.refreshMode();
    });
    this.client.on("close", () => {
      this.refreshMode();
    });
    this.subscriber = this.client.duplicate();
    this.subscriber.on("ready", () => {
      this.subscriber.subscribe(this.keys.channel).catch(() => {
        // Polling still works; the next reconnection subscribes again.
      });
    });
    this.subscriber.on("message", (_channel: string, from: string) => {
      if (from !== this.instanceId) this.tick();
    });
    this.subscriber.on("error", () => {
      // Reported through the command connection; ioredis reconnects both.
    });
  }

  /** `timeoutMs`: how long it may wait, QUEUE_TIMEOUT unless the caller has spent part of it already. */
  async acquire(signal: AbortSignal, onQueued?: (position: number) => void, timeoutMs = this.options.queueTimeoutMs): Promise<Slot> {
    const deadline = Date.now() + timeoutMs;
    stillWanted(signal);
    if (!this.settled) await this.firstOutcome;
    stillWanted(signal);
    if (this.closed || !this.isUp()) return this.withoutRedis(signal, onQueued, deadline);
    return this.wait(signal, onQueued, deadline);
  }

  stats(): LimiterStats {
    const base = { max_concurrent: this.options.maxConcurrent, limiter: this.mode };
    if (this.mode === "redis") {
      if (Date.now() - this.counts.at > STALE_COUNTS_MS) this.tick();
      return { in_flight: this.counts.inFlight, queued: this.counts.queued, ...base };
    }
    return { in_flight: this.held.size, queued: this.waiters.size + this.local.stats().queued, ...base };
  }

  /** At shutdown: waiters get a 503, released slots and departed waiters leave Redis, connections close; a held slot lapses after its TTL. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.stop();
    await this.syncing;
    if (this.isUp()) await this.sync();
    this.disconnect();
  }

  /** Stops at once, releasing nothing, as a crash would: its leases and queue entries lapse in Redis; waiters get a 503. */
  disconnect(): void {
    this.stop();
    this.client.disconnect();
    this.subscriber.disconnect();
  }

  private stop(): void {
    this.closed = true;
    clearTimeout(this.timer);
    for (const waiter of [...this.waiters.values()]) waiter.moveOut();
  }

  /** In the shared FIFO: the next round trip enters it, and each one tells it its place, until one grants it a slot. */
  private wait(signal: AbortSignal, onQueued: ((position: number) => void) | undefined, deadline: number): Promise<Slot> {
    const id = this.newId();
    return new Promise<Slot>((resolve) => {
      const leave = (outcome: () => Promise<Slot>) => {
        this.waiters.delete(id);
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        resolve(outcome());
      };
      const giveUp = (error: GatewayError) => {
        this.forgetLater(id);
        leave(() => Promise.reject(error));
        this.tick(); // out of the queue now, so the others move up now
      };
      const onAbort = () => {
        giveUp(fail.aborted(signal.reason));
      };
      const timer = setTimeout(() => {
        giveUp(fail.queueTimeout(this.options.queueTimeoutMs));
      }, Math.max(0, deadline - Date.now()));
      signal.addEventListener("abort", onAbort, { once: true });
      const waiter: Waiter = {
        position: 0,
        answer: (result) => {
          if (result === 0) {
            leave(() => Promise.resolve(this.hold(id)));
          } else if (result < 0) {
            leave(() => Promise.reject(fail.queueFull()));
          } else if (result !== waiter.position) {
            waiter.position = result;
            onQueued?.(result);
          }
        },
        moveOut: () => {
          this.forgetLater(id);
          leave(() => this.withoutRedis(signal, onQueued, deadline));
        },
      };
      this.waiters.set(id, waiter);
      this.tick();
    });
  }

  /** Admission while Redis cannot be reached: the local limit, or none at all (`closed`). */
  private async withoutRedis(signal: AbortSignal, onQueued: ((position: number) => void) | undefined, deadline: number): Promise<Slot> {
    if (this.closed || this.options.failureMode === "closed") throw fail.limiterUnavailable(this.closed ? undefined : this.lastError);
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw fail.queueTimeout(this.options.queueTimeoutMs);
    const slot = await this.local.acquire(signal, onQueued, remaining);
    return this.hold(this.newId(), slot);
  }

  /** A slot held here, granted by Redis or (`local`) by the local limit; either way leased in Redis while it answers and counted locally. */
  private hold(id: string, local = this.local.take()): Slot {
    this.held.add(id);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.held.delete(id);
        local.release();
        this.forgetLater(id);
        this.tick();
      },
    };
  }

  private forgetLater(id: string): void {
    if (this.forget.size >= MAX_FORGET) {
      const oldest = this.forget.values().next();
      if (!oldest.done) this.forget.delete(oldest.value);
    }
    this.forget.add(id);
  }

  /** Makes the round trip now, or right after the one under way; then again within a poll while anyone waits, else within IDLE_SYNC_MS. */
  private tick(): void {
    if (this.closed) return;
    if (this.syncing) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.syncing = this.sync().finally(() => {
      this.syncing = undefined;
      if (this.again) {
        this.again = false;
        this.tick();
      } else if (!this.closed) {
        const idleMs = this.waiters.size > 0 ? this.pollMs : Math.min(this.options.leaseTtlMs / 3, IDLE_SYNC_MS);
        // A little jitter, so that gateways do not poll in step.
        this.timer = setTimeout(() => {
          this.tick();
        }, idleMs * (0.8 + Math.random() * 0.2)).unref();
      }
    });
  }

  /** One round trip for everything this gateway holds, waits for or let go. */
  private async sync(): Promise<void> {
    const forget = [...this.forget];
    const held = [...this.held];
    // Newcomers go last: only they can be refused for a full queue.
    const known = [...this.waiters].filter(([, waiter]) => waiter.position > 0);
    const waiting = [...known, ...[...this.waiters].filter(([, waiter]) => waiter.position === 0)];
    const { maxConcurrent, maxQueue, leaseTtlMs } = this.options;
    let reply: number[];
    try {
      const args = [leaseTtlMs, maxConcurrent, maxQueue, this.keys.channel, this.instanceId, forget.length, held.length, known.length];
      const answer = await within(this.client.limiterSync(...this.keys.keys, ...args, ...forget, ...held, ...waiting.map(([id]) => id)), COMMAND_TIMEOUT_MS);
      if (!Array.isArray(answer) || !answer.every((item) => typeof item === "number")) {
        throw new Error(`unexpected reply from the limiter script: ${JSON.stringify(answer)}`);
      }
      reply = answer;
    } catch (error) {
      this.lastError = error;
      this.commandFailing = true;
      this.refreshMode();
      return;
    }
    if (this.commandFailing) {
      this.commandFailing = false;
      this.refreshMode();
    }
    for (const id of forget) this.forget.delete(id);
    this.counts = { inFlight: reply[0] ?? 0, queued: reply[1] ?? 0, at: Date.now() };
    waiting.forEach(([id, waiter], index) => {
      const result = reply[index + 2];
      // A waiter gone meanwhile is in `forget`: the next round trip frees whatever it got.
      if (result !== undefined && this.waiters.has(id)) waiter.answer(result);
    });
  }

  private isUp(): boolean {
    return this.client.status === "ready" && !this.commandFailing;
  }

  private refreshMode(): void {
    if (this.closed) return; // its own disconnect is no outage
    const up = this.isUp() || !this.settled;
    const mode: LimiterMode = up ? "redis" : this.options.failureMode === "local" ? "local (redis unreachable)" : "unavailable (redis unreachable)";
    if (mode !== this.mode) {
      this.mode = mode;
      this.options.onModeChange?.(mode, up ? undefined : this.lastError);
    }
    // The slots held already count against the local limit; the waiters move to its queue in order, or fail (`closed`).
    if (!up) for (const waiter of [...this.waiters.values()]) waiter.moveOut();
  }

  private newId(): string {
    this.counter++;
    return `${this.instanceId}:${this.counter.toString(36)}`;
  }
}
