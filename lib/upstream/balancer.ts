import { ERRORS, GatewayError, fail } from "../errors";
import type { Slot } from "../limiter/types";
import type { GenerateRequest } from "../schemas";
import type { ServerState } from "../api-shapes";
import { Ejection } from "./ejection";
import type { EjectionOptions, ServerChange } from "./ejection";
import { Member, inRotation, release } from "./member";
import type { Call } from "./member";
import { Orphans } from "./orphans";
import type { OrphanEnd } from "./orphans";
import { Probes } from "./probes";
import type { ProbeOptions } from "./probes";
import { UpstreamServer, neverSent, reportedHealth } from "./server";
import type { CallContext, HealthResult, OpenResponse, UpstreamOptions } from "./server";

export interface BalancerOptions extends UpstreamOptions, EjectionOptions, ProbeOptions {
  /** Generations one server may run at once through this gateway (MAX_CONCURRENT_PER_SERVER). */
  maxConcurrentPerServer: number;
  /** The clock: tests replace it to step through ejection periods. */
  now?: () => number;
  /** For the logs: each ejection and return, each orphan given up. */
  onChange?: (change: ServerChange) => void;
  onOrphanEnd?: (end: OrphanEnd) => void;
  /** Hears `capacity()` whenever it changes. */
  onCapacity?: (capacity: number) => void;
}

/** Retry-After for a GPU server's 503 before any generation was timed; after, one generation's typical time. */
const RETRY_AFTER_DEFAULT_MS = 5000;
const RETRY_AFTER_MAX_S = 60;
/** The weight of the newest generation in the typical time (an exponential moving average). */
const TYPICAL_WEIGHT = 0.2;

const NO_SLOT: Slot = { release: () => undefined };

/**
 * The GPU servers behind the gateway, with the calls the gateway makes
 * (generate, generateStream, health, metrics). Each call goes to the server
 * with the most free capacity, below its cap; a server that keeps failing is
 * ejected (ejection.ts); the servers' health is probes.ts's, and a call the
 * gateway stopped waiting for follows the orphan rule (orphans.ts). Only a call
 * that never reached a server fails over to another. With one server it passes
 * calls straight through: no background probe, no ejection, no failover; its
 * failures are the original gateway's errors, unchanged.
 */
export class Balancer {
  /** The servers' URLs without credentials, joined by commas. */
  readonly publicUrl: string;
  private readonly members: Member[];
  private readonly now: () => number;
  private readonly ejection: Ejection;
  private readonly probes: Probes;
  private readonly orphans: Orphans;
  /** Breaks ties between equally free servers in turn. */
  private turn = -1;
  private closed = false;
  /** How long a generation typically takes, from the send to the answer; undefined before the first. */
  private typicalMs: number | undefined;

  constructor(
    urls: readonly URL[],
    private readonly options: BalancerOptions,
  ) {
    if (urls.length === 0) throw new RangeError("a balancer needs at least one server");
    const now = (this.now = options.now ?? Date.now);
    const closed = () => this.closed;
    // When a client refused with a 503 should try again: about one generation's time, as a place comes free then.
    const retryAfterSeconds = () => Math.min(RETRY_AFTER_MAX_S, Math.max(1, Math.ceil((this.typicalMs ?? RETRY_AFTER_DEFAULT_MS) / 1000)));
    const serverOptions = { ...options, maxConcurrent: options.maxConcurrentPerServer, retryAfterSeconds };
    this.members = urls.map((url, index) => new Member(new UpstreamServer(url, serverOptions), index));
    this.publicUrl = this.members.map((member) => member.server.publicUrl).join(",");
    this.ejection = new Ejection(this.members, {
      ...options,
      now,
      closed,
      probe: (member) => void this.probes.probe(member, 0),
      onRotation: () => this.options.onCapacity?.(this.capacity()),
    });
    this.probes = new Probes(this.members, this.ejection, { ...options, now, closed });
    this.orphans = new Orphans(this.probes, { ...options, now, closed });
  }

  get size(): number {
    return this.members.length;
  }

  /**
   * POST /generate on the freest server. The limiter's `slot` is the call's from
   * here on, freed when the server is done with the generation: for a call the
   * gateway gave up on, that may be after the call's end (orphans.ts).
   */
  generate(request: GenerateRequest, signal: AbortSignal, context: CallContext = {}, slot = NO_SLOT): Promise<Buffer[]> {
    return this.attempt(slot, async (member, call) => {
      const answer = await member.server.generate(request, signal, context);
      this.ejection.judge(member);
      this.done(member, call);
      return answer;
    });
  }

  /** POST /generate-stream on the freest server: it counts as busy, and `slot` held, until the stream is done with (see `tracked`). */
  generateStream(request: GenerateRequest, signal: AbortSignal, context: CallContext = {}, slot = NO_SLOT): Promise<OpenResponse> {
    return this.attempt(slot, async (member, call) => this.tracked(member, call, await member.server.generateStream(request, signal, context)));
  }

  /**
   * What the servers in rotation can take at once through this gateway. The
   * limiter admits no more, so an admitted call finds a server with room and
   * every wait is the limiter's (bounded, counted, told to streams).
   */
  capacity(): number {
    return inRotation(this.members).length * this.options.maxConcurrentPerServer;
  }

  /** Generations whose client the gateway stopped waiting for, which the servers may still run (they hold their slots). */
  orphaned(): number {
    return this.members.reduce((count, member) => count + this.orphans.of(member).length, 0);
  }

  /**
   * One server's own health answer, or an aggregate of those in rotation; never
   * throws. Callers during a probe share it, and an answer serves for `healthReuseMs`.
   */
  health(): Promise<HealthResult> {
    return this.probes.health();
  }

  /** Each server's state as of now, from the latest probes (call `health()` first for fresh ones). */
  states(): ServerState[] {
    return this.members.map((member) => ({
      url: member.server.publicUrl,
      state: this.probes.stateOf(member),
      ejected_until: member.ejectedUntil === undefined ? null : new Date(member.ejectedUntil).toISOString(),
      in_flight: member.calls.size,
      max_concurrent: this.options.maxConcurrentPerServer,
      available_slots: member.health?.ok ? member.health.health.available_slots : null,
      consecutive_failures: member.failures,
      ejections: member.ejections,
      orphaned: this.orphans.of(member).length,
      health: member.health === undefined ? null : reportedHealth(member.health),
    }));
  }

  /** GET /metrics: one server's JSON bytes (its failure a 502), or `{"servers": {"<url>": <its JSON> | {"error": "..."}}}`. */
  async metrics(): Promise<Buffer> {
    const [only] = this.members;
    if (only && this.members.length === 1) {
      return only.server.metrics().catch((error: unknown) => {
        throw error instanceof GatewayError ? fail.metricsUnavailable(error) : error;
      });
    }
    const entries = await Promise.all(
      this.members.map(async (member): Promise<[string, unknown]> => {
        try {
          return [member.server.publicUrl, JSON.parse((await member.server.metrics()).toString("utf8"))];
        } catch (error) {
          return [member.server.publicUrl, { error: error instanceof Error ? error.message : String(error) }];
        }
      }),
    );
    return Buffer.from(JSON.stringify({ servers: Object.fromEntries(entries) }));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.probes.stop();
    for (const member of this.members) {
      clearTimeout(member.rejoinTimer);
      for (const call of member.calls) release(member, call);
    }
    await Promise.all(this.members.map((member) => member.server.close()));
  }

  /** Runs `run` on the freest server; a failure (`callFailed`) that never reached it is tried on the next, and none left is a 503. */
  private async attempt<T>(slot: Slot, run: (member: Member, call: Call) => Promise<T>): Promise<T> {
    this.probes.start();
    const tried = new Set<Member>();
    let lastError: unknown;
    for (;;) {
      const member = this.pick(tried);
      if (!member) {
        slot.release();
        throw fail.noServerAvailable(lastError);
      }
      const call: Call = { sentAt: this.now(), slot, orphanedAt: undefined, unseen: false, timer: undefined };
      member.calls.add(call);
      try {
        return await run(member, call);
      } catch (error) {
        this.callFailed(member, call, error);
        if (!this.retried(error)) throw error;
        tried.add(member);
        lastError = error;
      }
    }
  }

  /**
   * A failed call counts toward ejection. An answer means the server is done,
   * but for its own timeout (a 504): the genuine server's executor goes on
   * generating after it, its load no longer counting the call. A call cut
   * short may still run there.
   */
  private callFailed(member: Member, call: Call, error: unknown): void {
    this.ejection.judge(member, error);
    if (this.retried(error)) release(member, call, false);
    else if (!(error instanceof GatewayError && ERRORS[error.code].answered)) this.orphans.orphan(member, call);
    else if (error.code === "upstream_status" && error.status === 504) this.orphans.orphan(member, call, { unseen: true });
    else release(member, call);
  }

  /** The server is done with the call: it is timed (once) and its place freed. */
  private done(member: Member, call: Call): void {
    if (member.calls.has(call)) {
      const ms = this.now() - call.sentAt;
      this.typicalMs = this.typicalMs === undefined ? ms : this.typicalMs + TYPICAL_WEIGHT * (ms - this.typicalMs);
    }
    release(member, call);
  }

  /** Whether a failed call is tried on another server: only when it never reached this one, and there are others. */
  private retried(error: unknown): boolean {
    return this.members.length > 1 && neverSent(error);
  }

  /** The best server in rotation below its cap, not yet tried by this call. */
  private pick(tried: ReadonlySet<Member>): Member | undefined {
    this.turn = (this.turn + 1) % this.members.length;
    const fallback = this.typicalCapacity();
    const candidates = inRotation(this.members).filter((member) => !tried.has(member));
    // The limiter admits no more than the servers in rotation can take, so one has room; only a call
    // failing over from a server that refused it may find none, and goes over a cap rather than wait.
    const roomy = candidates.filter((member) => member.calls.size < this.options.maxConcurrentPerServer);
    let best: Member | undefined;
    for (const member of roomy.length > 0 ? roomy : candidates) {
      if (!best || this.better(member, best, fallback)) best = member;
    }
    return best;
  }

  /**
   * The order of choice: a server whose probe said it serves first; then the
   * smallest share of its capacity in use (in flight / capacity); then the fewest
   * in flight; then in turn. Idle servers tie whatever their capacity, so light
   * traffic goes round and a stale capacity cannot pull it all to one server.
   */
  private better(a: Member, b: Member, fallback: number): boolean {
    const downA = this.probes.stateOf(a) === "down";
    const downB = this.probes.stateOf(b) === "down";
    if (downA !== downB) return downB;
    const loadA = load(a, fallback);
    const loadB = load(b, fallback);
    if (loadA !== loadB) return loadA < loadB;
    if (a.calls.size !== b.calls.size) return a.calls.size < b.calls.size;
    const count = this.members.length;
    return (a.index - this.turn + count) % count < (b.index - this.turn + count) % count;
  }

  /** The capacity assumed for a server that has not told its own: the mean of those known, else 1. */
  private typicalCapacity(): number {
    const known = this.members.flatMap((member) => (member.capacity === null ? [] : [member.capacity]));
    return known.length === 0 ? 1 : known.reduce((total, capacity) => total + capacity, 0) / known.length;
  }

  /** The stream, `member` busy until its body ends or close(): an orphan then, unless the caller saw the server's last event. */
  private tracked(member: Member, call: Call, response: OpenResponse): OpenResponse {
    let judged = false;
    const judge = (error?: unknown) => {
      if (!judged) this.ejection.judge(member, error);
      judged = true;
    };
    const done = this.done.bind(this, member, call);
    async function* chunks(): AsyncGenerator<Buffer> {
      try {
        for await (const chunk of response.chunks) yield chunk;
      } catch (error) {
        judge(error);
        throw error;
      }
      // The server ended the stream: it is done with the generation.
      judge();
      done();
    }
    return {
      chunks: chunks(),
      close: (finished = false) => {
        response.close();
        judge();
        if (finished) done();
        else this.orphans.orphan(member, call);
      },
    };
  }
}

/** The share of a server's capacity this gateway uses; a server with none free comes after every other. */
function load(member: Member, fallback: number): number {
  const capacity = member.capacity ?? fallback;
  if (capacity <= 0) return Infinity;
  return member.calls.size / capacity;
}
