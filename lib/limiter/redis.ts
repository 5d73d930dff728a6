import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { Redis } from "ioredis";
import { fail } from "../errors";
import { REDIS_CONNECTION, connectedWithin, evalScript } from "../redis-connection";
import type { Script } from "../redis-connection";
import type { GatewayError } from "../errors";
import { LocalLimiter } from "./local";
import type { LocalLimiterOptions } from "./local";
import { ENTER, SYNC, limiterKeys } from "./redis-scripts";
import type { LimiterKeys } from "./redis-scripts";
import { Ticker } from "./ticker";
import type { Limiter, LimiterMode, LimiterStats, Slot } from "./types";

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

export const DEFAULT_KEY_PREFIX = "text2image-gateway:limiter";
const DEFAULT_POLL_MS = 100;
/** The longest a gateway goes without renewing its leases and refreshing its counts. */
const IDLE_SYNC_MS = 1000;
/** stats() asks for fresh counts when the ones it has are older than this. */
const STALE_COUNTS_MS = 500;
/** Ids kept to remove from Redis once it answers again; past this, the leases' own expiry does it. */
const MAX_FORGET = 10_000;

interface Waiter {
  position: number;
  readonly onQueued: ((position: number) => void) | undefined;
  granted(): void;
  /** Redis went away while it waited: wait locally instead, or fail (closed). */
  moveOut(): void;
  /** The limiter closed under it. */
  abandon(): void;
}

interface Held {
  /** Its local slot: when admitted locally, or counted against the local limit during an outage. */
  local: Promise<Slot> | undefined;
  /** Its lease may be in Redis, so a release must remove it there. */
  inRedis: boolean;
}

function stillWanted(signal: AbortSignal): void {
  if (signal.aborted) throw fail.aborted(signal.reason);
}

/**
 * One concurrency limit over every gateway sharing a Redis: slots are leases
 * their gateway renews, waiters form one FIFO across gateways, and a gateway
 * makes one round trip (SYNC) per tick for all its leases and waiters: every
 * `pollMs` while it has waiters, else at most a second apart, and at once when
 * another publishes a change. While Redis is unreachable a LocalLimiter stands
 * in (`closed`: new work is refused); global limiting resumes when it can.
 */
export class RedisLimiter implements Limiter {
  private readonly client: Redis;
  private readonly subscriber: Redis;
  private readonly keys: LimiterKeys;
  private readonly instanceId = `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
  private readonly local: LocalLimiter;
  private readonly pollMs: number;
  private readonly waiters = new Map<string, Waiter>();
  private readonly held = new Map<string, Held>();
  private readonly forget = new Set<string>();
  private counter = 0;
  private counts = { inFlight: 0, queued: 0, at: 0 };
  private readonly ticker: Ticker;
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
    this.ticker = new Ticker(() => this.sync(), () => (this.waiters.size > 0 ? this.pollMs : Math.min(options.leaseTtlMs / 3, IDLE_SYNC_MS)));
    this.client = new Redis(options.redisUrl, REDIS_CONNECTION);
    // ioredis reports a connection that cannot be made within connectTimeout; the wait's own limit is a last resort.
    this.firstOutcome = connectedWithin(this.client, (REDIS_CONNECTION.connectTimeout ?? 0) + 1000, { orFailed: true }).then(() => {
      this.settled = true;
      this.refreshMode();
    });
    this.client.on("ready", () => {
      this.commandFailing = false;
      this.refreshMode();
      this.ticker.now();
    });
    const down = (error?: unknown) => {
      if (error !== undefined) this.lastError = error;
      this.refreshMode();
    };
    this.client.on("error", down);
    this.client.on("close", () => {
      down();
    });
    this.subscriber = this.client.duplicate();
    this.subscriber.on("ready", () => {
      this.subscriber.subscribe(this.keys.channel).catch(() => {
        // Polling still works; the next reconnection subscribes again.
      });
    });
    this.subscriber.on("message", (_channel: string, from: string) => {
      if (from !== this.instanceId) this.ticker.now();
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

    const id = this.newId();
    let reply: number[];
    try {
      reply = await this.run(ENTER, [id, this.options.maxConcurrent, this.options.maxQueue, this.options.leaseTtlMs, this.keys.channel, this.instanceId]);
    } catch (error) {
      this.forgetLater(id); // it may have been entered before the answer was lost
      this.commandFailed(error);
      return this.withoutRedis(signal, onQueued, deadline);
    }
    this.commandSucceeded();
    const [position = -1, inFlight = 0, queued = 0] = reply;
    this.counts = { inFlight, queued, at: Date.now() };
    if (signal.aborted) {
      this.forgetLater(id);
      this.ticker.now();
      throw fail.aborted(signal.reason);
    }
    if (position === 0) return this.hold(id, { local: undefined, inRedis: true });
    if (position < 0) throw fail.queueFull();
    return this.wait(id, position, signal, onQueued, deadline);
  }

  stats(): LimiterStats {
    const base = { max_concurrent: this.options.maxConcurrent, limiter: this.mode };
    if (this.mode === "redis") {
      if (!this.closed && Date.now() - this.counts.at > STALE_COUNTS_MS) this.ticker.now();
      return { in_flight: this.counts.inFlight, queued: this.counts.queued, ...base };
    }
    return { in_flight: this.held.size, queued: this.waiters.size + this.local.stats().queued, ...base };
  }

  /** At shutdown: waiters get a 503, released slots and departed waiters leave Redis, connections close; a held slot lapses after its TTL. */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const waiter of [...this.waiters.values()]) waiter.abandon();
    this.closed = true;
    this.ticker.stop();
    await this.ticker.done;
    if (this.isUp()) await this.sync();
    this.disconnect();
  }

  /** Stops at once, releasing nothing, as a crash would: its leases and queue entries lapse in Redis; waiters get a 503. */
  disconnect(): void {
    for (const waiter of [...this.waiters.values()]) waiter.abandon();
    this.closed = true;
    this.ticker.stop();
    this.client.disconnect();
    this.subscriber.disconnect();
  }

  private wait(id: string, position: number, signal: AbortSignal, onQueued: ((position: number) => void) | undefined, deadline: number): Promise<Slot> {
    return new Promise<Slot>((resolve, reject) => {
      if (this.closed) {
        // closed while its entry was made
        this.forgetLater(id);
        reject(fail.limiterUnavailable());
        return;
      }
      const leave = () => {
        this.waiters.delete(id);
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
      };
      const giveUp = (error: GatewayError) => {
        leave();
        this.forgetLater(id);
        this.ticker.now(); // out of the queue now, so the others move up now
        reject(error);
      };
      const onAbort = () => {
        giveUp(fail.aborted(signal.reason));
      };
      const timer = setTimeout(() => {
        giveUp(fail.queueTimeout(this.options.queueTimeoutMs));
      }, Math.max(0, deadline - Date.now()));
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiters.set(id, {
        position,
        onQueued,
        granted: () => {
          leave();
          resolve(this.hold(id, { local: undefined, inRedis: true }));
        },
        moveOut: () => {
          leave();
          this.forgetLater(id);
          this.withoutRedis(signal, onQueued, deadline).then(resolve, reject);
        },
        abandon: () => {
          leave();
          this.forgetLater(id);
          reject(fail.limiterUnavailable());
        },
      });
      onQueued?.(position);
      if (this.isUp()) this.ticker.within(this.pollMs);
      else this.refreshMode();
    });
  }

  /** Admission while Redis cannot be reached: the local limit, or none at all (`closed`). */
  private async withoutRedis(signal: AbortSignal, onQueued: ((position: number) => void) | undefined, deadline: number): Promise<Slot> {
    if (this.closed || this.options.failureMode === "closed") throw fail.limiterUnavailable(this.lastError);
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw fail.queueTimeout(this.options.queueTimeoutMs);
    const slot = await this.local.acquire(signal, onQueued, remaining);
    return this.hold(this.newId(), { local: Promise.resolve(slot), inRedis: false });
  }

  private hold(id: string, held: Held): Slot {
    this.held.set(id, held);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.held.delete(id);
        void held.local?.then((slot) => {
          slot.release();
        });
        if (held.inRedis) {
          this.forgetLater(id);
          this.ticker.now();
        }
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

  /** One round trip for everything this gateway holds, waits for or let go. */
  private async sync(): Promise<void> {
    const forget = [...this.forget];
    const held = [...this.held.keys()];
    const waiting = [...this.waiters.keys()];
    const up = this.isUp();
    let reply: number[];
    try {
      reply = await this.run(SYNC, [
        this.options.leaseTtlMs,
        this.options.maxConcurrent,
        this.keys.channel,
        this.instanceId,
        forget.length,
        held.length,
        waiting.length,
        ...forget,
        ...held,
        ...waiting,
      ]);
    } catch (error) {
      // A lease sent while the connection looked up may have landed: remove it on release.
      if (up) this.markInRedis(held);
      this.commandFailed(error);
      return;
    }
    this.commandSucceeded();
    for (const id of forget) this.forget.delete(id);
    this.markInRedis(held);
    this.counts = { inFlight: reply[0] ?? 0, queued: reply[1] ?? 0, at: Date.now() };
    waiting.forEach((id, index) => {
      const result = reply[index + 2];
      const waiter = this.waiters.get(id);
      // A waiter gone meanwhile is in `forget`: the next sync frees whatever it got.
      if (!waiter || result === undefined) return;
      if (result === 0) waiter.granted();
      else if (result !== waiter.position) {
        waiter.position = result;
        waiter.onQueued?.(result);
      }
    });
  }

  private markInRedis(ids: string[]): void {
    for (const id of ids) {
      const held = this.held.get(id);
      if (held) held.inRedis = true;
    }
  }

  private async run(script: Script, args: (string | number)[]): Promise<number[]> {
    const reply = await evalScript(this.client, script, this.keys.keys, args);
    if (!Array.isArray(reply) || !reply.every((item) => typeof item === "number")) {
      throw new Error(`unexpected reply from the limiter script: ${JSON.stringify(reply)}`);
    }
    return reply;
  }

  private isUp(): boolean {
    return this.client.status === "ready" && !this.commandFailing;
  }

  private commandFailed(error: unknown): void {
    this.lastError = error;
    this.commandFailing = true;
    this.refreshMode();
  }

  private commandSucceeded(): void {
    if (!this.commandFailing) return;
    this.commandFailing = false;
    this.refreshMode();
  }

  private refreshMode(): void {
    if (this.closed) return; // its own disconnect is no outage
    const up = this.isUp() || !this.settled;
    const mode: LimiterMode = up ? "redis" : this.options.failureMode === "local" ? "local (redis unreachable)" : "unavailable (redis unreachable)";
    if (mode !== this.mode) {
      this.mode = mode;
      this.options.onModeChange?.(mode, up ? undefined : this.lastError);
    }
    if (!up) this.handleOutage();
  }

  /** Redis is unreachable: held slots count against the local limit, and waiters move to its queue in order, or fail (`closed`). Idempotent. */
  private handleOutage(): void {
    if (this.options.failureMode === "local") {
      for (const held of this.held.values()) {
        if (held.local) continue;
        const local = this.local.stats();
        if (local.in_flight >= local.max_concurrent || local.queued > 0) break;
        // Granted at once (there is room), so this neither waits nor times out.
        held.local = this.local.acquire(new AbortController().signal);
      }
    }
    for (const waiter of [...this.waiters.values()]) waiter.moveOut();
  }

  private newId(): string {
    this.counter++;
    return `${this.instanceId}:${this.counter.toString(36)}`;
  }
}
