import { setTimeout as sleep } from "node:timers/promises";
import { GatewayError, fail } from "../errors";
import type { Slot } from "../limiter/types";
import { canGenerate } from "../schemas";
import type { GenerateRequest, ServerState } from "../schemas";
import { UpstreamServer, neverSent, reportedHealth } from "./server";
import type { CallContext, HealthResult, OpenResponse, UpstreamOptions } from "./server";

export interface BalancerOptions extends UpstreamOptions {
  /** Generations one server may run at once through this gateway (MAX_CONCURRENT_PER_SERVER). */
  maxConcurrentPerServer: number;
  /** Time between background health probes of each server (several servers only). */
  healthIntervalMs: number;
  /** How long one health answer serves every caller (HEALTH_REUSE): /api/health pollers and the background probe alike. */
  healthReuseMs: number;
  /** Connection failures or 5xx in a row that take a server out (EJECT_AFTER_FAILURES). */
  ejectAfterFailures: number;
  /** The first ejection's length, doubled for each further one in a row up to ejectMaxMs. */
  ejectBaseMs: number;
  ejectMaxMs: number;
  /** The clock: tests replace it to step through ejection periods. */
  now?: () => number;
  /** For the logs: each ejection and return, each orphan given up. */
  onChange?: (change: ServerChange) => void;
  onOrphanEnd?: (end: OrphanEnd) => void;
  /** Hears `capacity()` whenever it changes. */
  onCapacity?: (capacity: number) => void;
}

export interface OrphanEnd {
  url: string;
  /** How long its slot was held after the gateway stopped waiting for it. */
  heldMs: number;
  /** "finished": the server's load says it is done; "timeout": REQUEST_TIMEOUT passed first; "server gone": connections refused. */
  reason: "finished" | "timeout" | "server gone";
}

export interface ServerChange {
  event: "ejected" | "rejoined";
  url: string;
  /** For an ejection: its length, and the failures in a row that caused it. */
  periodMs?: number;
  failures?: number;
}

/** The probe at the end of an ejection runs this much after it, so it finds the period over. */
const REJOIN_SLACK_MS = 10;

/** Orphans (see `Balancer.orphan`) are probed soon after, for a server that stops on a closed connection, then at this interval. */
const ORPHAN_FIRST_PROBE_MS = 30;
const ORPHAN_PROBE_MS = 250;
/**
 * A call younger than this when a probe leaves may not be in the server's queue
 * yet (the genuine server enqueues a stream once its headers are out, and stalls
 * while it encodes an image): left out of the count, it can only keep orphans longer.
 */
const ARRIVAL_SLACK_MS = 100;
/**
 * How long after a probe's answer the count waits, so that a call the server had
 * finished, its answer on the way, shows it by arriving: taken for unfinished, it
 * would let an orphan go too soon. (The genuine server sees a finished stream within 0.1 s.)
 */
const LIVE_GRACE_MS = 500;

/** One generation this gateway sent to a server, from the send until the server is done with it. */
interface Call {
  readonly sentAt: number;
  /** The limiter's slot: freed with the call, unless the call is tried again elsewhere. */
  readonly slot: Slot;
  /** Set when the gateway stopped waiting while the server may still run it. */
  orphanedAt: number | undefined;
  /** An orphan the server's load no longer counts (it timed the call out itself): only its deadline frees it. */
  unseen: boolean;
  timer: NodeJS.Timeout | undefined;
}

/** Retry-After for a GPU server's 503 before any generation was timed; after, one generation's typical time. */
const RETRY_AFTER_DEFAULT_MS = 5000;
const RETRY_AFTER_MAX_S = 60;
/** The weight of the newest generation in the typical time (an exponential moving average). */
const TYPICAL_WEIGHT = 0.2;

const NO_SLOT: Slot = { release: () => undefined };

interface Member {
  readonly server: UpstreamServer;
  readonly index: number;
  inFlight: number;
  /** Counted failures (connection failures, 5xx) in a row. */
  failures: number;
  /** Set while ejected: when the period ends. The server returns at the first good probe after it. */
  ejectedUntil: number | undefined;
  ejections: number;
  /** Ejections in a row, each doubling the period; forgotten once the server stays in as long as its last one lasted. */
  streak: number;
  lastPeriodMs: number;
  rejoinedAt: number | undefined;
  rejoinTimer: NodeJS.Timeout | undefined;
  health: HealthResult | undefined;
  probedAt: number;
  probing: Promise<HealthResult> | undefined;
  /** By its latest probe: the `available_slots` it reported plus this gateway's calls it ran then; null when unknown. */
  capacity: number | null;
  /** Generations sent to it and not done with, in the order they were sent. */
  calls: Set<Call>;
  /** True while its orphans are being watched. */
  watching: boolean;
}

/**
 * The GPU servers behind the gateway, with the calls the gateway makes
 * (generate, generateStream, health, metrics). Each call goes to the server
 * with the most free capacity, below its cap; a server that fails
 * `ejectAfterFailures` times in a row is ejected for a period that doubles
 * with each ejection in a row (Envoy's outlier detection), never the last one
 * in rotation. Only a call that never reached a server fails over to another.
 * With one server it passes calls straight through: no background probe, no
 * ejection, no failover; its failures are the original gateway's errors, unchanged.
 */
export class Balancer {
  /** The servers' URLs without credentials, joined by commas. */
  readonly publicUrl: string;
  private readonly members: Member[];
  private readonly now: () => number;
  /** Breaks ties between equally free servers in turn. */
  private turn = -1;
  private started = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  /** How long a generation typically takes, from the send to the answer; undefined before the first. */
  private typicalMs: number | undefined;

  constructor(
    urls: readonly URL[],
    private readonly options: BalancerOptions,
  ) {
    if (urls.length === 0) throw new RangeError("a balancer needs at least one server");
    this.now = options.now ?? Date.now;
    this.members = urls.map((url, index) => ({
      server: new UpstreamServer(url, {
        ...options,
        maxConcurrent: options.maxConcurrentPerServer,
        retryAfterSeconds: () => this.retryAfterSeconds(),
      }),
      index,
      inFlight: 0,
      failures: 0,
      ejectedUntil: undefined,
      ejections: 0,
      streak: 0,
      lastPeriodMs: 0,
      rejoinedAt: undefined,
      rejoinTimer: undefined,
      health: undefined,
      probedAt: 0,
      probing: undefined,
      capacity: null,
      calls: new Set(),
      watching: false,
    }));
    this.publicUrl = this.members.map((member) => member.server.publicUrl).join(",");
  }

  get size(): number {
    return this.members.length;
  }

  /**
   * POST /generate on the freest server. The limiter's `slot` is the call's from
   * here on, freed when the server is done with the generation: for a call the
   * gateway gave up on, that may be after the call's end (see `orphan`).
   */
  generate(request: GenerateRequest, signal: AbortSignal, context: CallContext = {}, slot = NO_SLOT): Promise<Buffer[]> {
    return this.attempt(slot, async (member, call) => {
      try {
        const answer = await member.server.generate(request, signal, context);
        this.judge(member);
        this.timed(call);
        this.release(member, call);
        return answer;
      } catch (error) {
        throw this.callFailed(member, call, error);
      }
    });
  }

  /** POST /generate-stream on the freest server: it counts as busy, and `slot` held, until the stream is done with (see `tracked`). */
  generateStream(request: GenerateRequest, signal: AbortSignal, context: CallContext = {}, slot = NO_SLOT): Promise<OpenResponse> {
    return this.attempt(slot, async (member, call) => {
      let response: OpenResponse;
      try {
        response = await member.server.generateStream(request, signal, context);
      } catch (error) {
        throw this.callFailed(member, call, error);
      }
      return this.tracked(member, call, response);
    });
  }

  /**
   * What the servers in rotation can take at once through this gateway. The
   * limiter admits no more, so an admitted call finds a server with room and
   * every wait is the limiter's (bounded, counted, told to streams).
   */
  capacity(): number {
    return this.members.filter((member) => member.ejectedUntil === undefined).length * this.options.maxConcurrentPerServer;
  }

  /** When a client refused with a 503 should try again: about one generation's time, as a place comes free then. */
  retryAfterSeconds(): number {
    return Math.min(RETRY_AFTER_MAX_S, Math.max(1, Math.ceil((this.typicalMs ?? RETRY_AFTER_DEFAULT_MS) / 1000)));
  }

  /** Generations whose client the gateway stopped waiting for, which the servers may still run (they hold their slots). */
  orphaned(): number {
    return this.members.reduce((count, member) => count + this.orphansOf(member).length, 0);
  }

  /**
   * One server's own health answer, or an aggregate of those in rotation; never
   * throws. Callers during a probe share it, and an answer serves for `healthReuseMs`.
   */
  async health(): Promise<HealthResult> {
    this.start();
    const [only] = this.members;
    if (only && this.members.length === 1) return this.probe(only, this.options.healthReuseMs);
    await Promise.all(this.members.map((member) => this.probe(member, this.options.healthReuseMs)));
    return this.aggregate();
  }

  /** Each server's state as of now, from the latest probes (call `health()` first for fresh ones). */
  states(): ServerState[] {
    return this.members.map((member) => ({
      url: member.server.publicUrl,
      state: this.stateOf(member),
      ejected_until: member.ejectedUntil === undefined ? null : new Date(member.ejectedUntil).toISOString(),
      in_flight: member.inFlight,
      max_concurrent: this.options.maxConcurrentPerServer,
      available_slots: member.health?.ok ? member.health.health.available_slots : null,
      consecutive_failures: member.failures,
      ejections: member.ejections,
      orphaned: this.orphansOf(member).length,
      health: reported(member.health),
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

  /** Stops the probes and closes every server's pool. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    for (const member of this.members) {
      clearTimeout(member.rejoinTimer);
      for (const call of member.calls) this.release(member, call);
    }
    await Promise.all(this.members.map((member) => member.server.close()));
  }

  /** Runs `run` on the freest server; a failure that never reached it (`neverSent`) is tried on the next, and none left is a 503. */
  private async attempt<T>(slot: Slot, run: (member: Member, call: Call) => Promise<T>): Promise<T> {
    this.start();
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
  private callFailed(member: Member, call: Call, error: unknown): unknown {
    this.judge(member, error);
    if (this.retried(error)) this.release(member, call, false);
    else if (timedOutThere(error)) this.orphan(member, call, { unseen: true });
    else if (answered(error) || (error instanceof GatewayError && error.code === "upstream_bad_response")) this.release(member, call);
    else this.orphan(member, call);
    return error;
  }

  private timed(call: Call): void {
    const ms = this.now() - call.sentAt;
    this.typicalMs = this.typicalMs === undefined ? ms : this.typicalMs + TYPICAL_WEIGHT * (ms - this.typicalMs);
  }

  /** Whether a failed call is tried on another server: only when it never reached this one, and there are others. */
  private retried(error: unknown): boolean {
    return this.members.length > 1 && neverSent(error);
  }

  /** Takes the best server in rotation below its cap, not yet tried by this call, and counts the call on it. */
  private pick(tried: ReadonlySet<Member>): Member | undefined {
    const count = this.members.length;
    this.turn = (this.turn + 1) % count;
    const fallback = this.typicalCapacity();
    const candidates = this.members.filter((member) => member.ejectedUntil === undefined && !tried.has(member));
    // The limiter admits no more than the servers in rotation can take, so one has room; only a call
    // failing over from a server that refused it may find none, and goes over a cap rather than wait.
    const roomy = candidates.filter((member) => member.inFlight < this.options.maxConcurrentPerServer);
    let best: Member | undefined;
    for (const member of roomy.length > 0 ? roomy : candidates) {
      if (!best || this.better(member, best, fallback)) best = member;
    }
    if (best) best.inFlight++;
    return best;
  }

  /**
   * The order of choice: a server whose probe said it serves first; then the
   * smallest share of its capacity in use (in flight / capacity); then the fewest
   * in flight; then in turn. Idle servers tie whatever their capacity, so light
   * traffic goes round and a stale capacity cannot pull it all to one server.
   */
  private better(a: Member, b: Member, fallback: number): boolean {
    const downA = this.stateOf(a) === "down";
    const downB = this.stateOf(b) === "down";
    if (downA !== downB) return downB;
    const loadA = load(a, fallback);
    const loadB = load(b, fallback);
    if (loadA !== loadB) return loadA < loadB;
    if (a.inFlight !== b.inFlight) return a.inFlight < b.inFlight;
    const count = this.members.length;
    return (a.index - this.turn + count) % count < (b.index - this.turn + count) % count;
  }

  /** The capacity assumed for a server that has not told its own: the mean of those known, else 1. */
  private typicalCapacity(): number {
    const known = this.members.flatMap((member) => (member.capacity === null ? [] : [member.capacity]));
    return known.length === 0 ? 1 : known.reduce((total, capacity) => total + capacity, 0) / known.length;
  }

  private judge(member: Member, error?: unknown): void {
    if (countsAsFailure(error)) {
      this.failed(member);
    } else if (!isNeutral(error)) {
      member.failures = 0;
    }
  }

  /** The call is over for the server: its place is free, and the limiter's slot unless the call goes on elsewhere (`slot` false). */
  private release(member: Member, call: Call, slot = true): void {
    if (!member.calls.delete(call)) return;
    clearTimeout(call.timer);
    member.inFlight--;
    if (slot) call.slot.release();
  }

  /**
   * The gateway stopped waiting for a call (client gone, a deadline, a broken
   * stream), but the genuine server never looks at the connection and runs every
   * queued generation to its end. The call keeps its place and slot, so the
   * limit still bounds what the server runs, until the server's load shows it
   * done, and at most REQUEST_TIMEOUT; an `unseen` one, which the load cannot
   * show, for REQUEST_TIMEOUT (or until the server is gone).
   */
  private orphan(member: Member, call: Call, { unseen = false } = {}): void {
    if (!member.calls.has(call) || call.orphanedAt !== undefined) return;
    call.orphanedAt = this.now();
    call.unseen = unseen;
    call.timer = setTimeout(() => {
      this.giveUp(member, call, "timeout");
    }, this.options.requestTimeoutMs);
    call.timer.unref();
    void this.watch(member);
  }

  private giveUp(member: Member, call: Call, reason: OrphanEnd["reason"]): void {
    if (!member.calls.has(call) || call.orphanedAt === undefined) return;
    this.options.onOrphanEnd?.({ url: member.server.publicUrl, heldMs: this.now() - call.orphanedAt, reason });
    this.release(member, call);
  }

  private orphansOf(member: Member): Call[] {
    return [...member.calls].filter((call) => call.orphanedAt !== undefined);
  }

  /** Probes a server while it has orphans, and lets go of those its load says are done. */
  private async watch(member: Member): Promise<void> {
    if (member.watching) return;
    member.watching = true;
    try {
      for (let wait = ORPHAN_FIRST_PROBE_MS; ; wait = ORPHAN_PROBE_MS) {
        await sleep(wait, undefined, { ref: false });
        if (this.closed || this.orphansOf(member).length === 0) return;
        const askedAt = this.now();
        const inFlight = member.inFlight;
        const result = await member.server.health();
        this.observe(member, result, inFlight);
        await this.countOrphans(member, result, askedAt);
      }
    } finally {
      member.watching = false;
    }
  }

  /**
   * Which orphans a probe shows done. The server's unfinished work (active +
   * queued) includes every call of this gateway there then and not done, so of
   * the calls sent before the probe all but that many are done; calls still
   * waiting for their answer are not (hence the grace), so that many orphans go.
   * Other clients only add load: orphans are kept longer, never shorter.
   * Connections refused: the server is not running, its queue is gone.
   */
  private async countOrphans(member: Member, result: HealthResult, askedAt: number): Promise<void> {
    if (!result.ok) {
      if (result.failure && neverSent(result.failure)) for (const call of this.orphansOf(member)) this.giveUp(member, call, "server gone");
      return;
    }
    const { active_generations: active, current_queue_size: queued } = result.health;
    if (active === null || queued === null) return; // it does not say: the orphans' deadlines decide
    const counted = [...member.calls].filter((call) => call.sentAt <= askedAt - ARRIVAL_SLACK_MS);
    if (counted.some((call) => call.orphanedAt === undefined || call.orphanedAt > askedAt)) {
      await sleep(LIVE_GRACE_MS, undefined, { ref: false });
    }
    // An unseen orphan is in no count of the server's: leaving it out, the rest add up.
    const holding = counted.filter((call) => member.calls.has(call) && !call.unseen);
    let done = holding.length - (active + queued);
    for (const call of holding) {
      if (done <= 0) break;
      if (call.orphanedAt === undefined) continue;
      this.giveUp(member, call, "finished");
      done--;
    }
  }

  /** The stream, `member` busy until its body ends or close(): an orphan then, unless the caller saw the server's last event. */
  private tracked(member: Member, call: Call, response: OpenResponse): OpenResponse {
    let judged = false;
    const judge = (error?: unknown) => {
      if (judged) return;
      judged = true;
      this.judge(member, error);
    };
    // The server is done with it: timed (once) and its place freed.
    const done = () => {
      if (member.calls.has(call)) this.timed(call);
      this.release(member, call);
    };
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
        else this.orphan(member, call);
      },
    };
  }

  private failed(member: Member): void {
    member.failures++;
    if (member.failures >= this.options.ejectAfterFailures) this.eject(member);
  }

  /** Takes `member` out of rotation, unless it is the last one in. */
  private eject(member: Member): void {
    if (this.closed || member.ejectedUntil !== undefined) return;
    if (this.members.filter((other) => other.ejectedUntil === undefined).length <= 1) return;
    const now = this.now();
    if (member.rejoinedAt !== undefined && now - member.rejoinedAt >= member.lastPeriodMs) member.streak = 0;
    member.streak++;
    const periodMs = Math.min(this.options.ejectBaseMs * 2 ** (member.streak - 1), this.options.ejectMaxMs);
    member.lastPeriodMs = periodMs;
    member.ejectedUntil = now + periodMs;
    member.ejections++;
    clearTimeout(member.rejoinTimer);
    member.rejoinTimer = setTimeout(() => void this.probe(member, 0), periodMs + REJOIN_SLACK_MS);
    member.rejoinTimer.unref();
    this.options.onChange?.({ event: "ejected", url: member.server.publicUrl, periodMs, failures: member.failures });
    this.options.onCapacity?.(this.capacity());
  }

  /** Starts the background probes on first use, with several servers only; the timer never keeps the process up. */
  private start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    if (this.members.length < 2) return;
    this.timer = setInterval(() => {
      this.probeAll();
    }, this.options.healthIntervalMs);
    this.timer.unref();
    this.probeAll();
  }

  /** The background probe: skips a server whose latest answer (to an /api/health poll, say) is fresh enough. */
  private probeAll(): void {
    const maxAgeMs = Math.min(this.options.healthReuseMs, this.options.healthIntervalMs / 2);
    for (const member of this.members) void this.probe(member, maxAgeMs);
  }

  /** GET /health of one server, shared by everyone asking meanwhile, and reused while younger than `maxAgeMs`. */
  private probe(member: Member, maxAgeMs: number): Promise<HealthResult> {
    if (member.probing) return member.probing;
    if (member.health && this.now() - member.probedAt < maxAgeMs) return Promise.resolve(member.health);
    // The calls in flight as the probe leaves are the ones its answer most likely counts.
    const inFlight = member.inFlight;
    const probing = member.server
      .health()
      .then((result) => {
        this.observe(member, result, inFlight);
        return result;
      })
      .finally(() => {
        member.probing = undefined;
      });
    member.probing = probing;
    return probing;
  }

  /**
   * A probe's refused connection or 5xx counts toward ejection, so a dead server
   * goes out with no traffic; a good answer does not clear the count (a served
   * call does), or a server failing every generation but /health would stay.
   */
  private observe(member: Member, result: HealthResult, inFlight: number): void {
    const now = this.now();
    const slots = result.ok ? result.health.available_slots : null;
    member.health = result;
    member.probedAt = now;
    member.capacity = slots === null ? null : Math.max(slots + inFlight, 0);
    if (!result.ok && result.failure && (neverSent(result.failure) || isServerError(result.failure))) this.failed(member);
    if (member.ejectedUntil === undefined || now < member.ejectedUntil || !serves(result)) return;
    member.ejectedUntil = undefined;
    member.failures = 0;
    member.rejoinedAt = now;
    clearTimeout(member.rejoinTimer);
    this.options.onChange?.({ event: "rejoined", url: member.server.publicUrl });
    this.options.onCapacity?.(this.capacity());
  }

  private stateOf(member: Member): ServerState["state"] {
    if (member.ejectedUntil !== undefined) return "ejected";
    return member.health === undefined || serves(member.health) ? "up" : "down";
  }

  /** For several servers, from those in rotation that answered: "healthy" if one serves; model and CUDA true if one says so; loads summed. */
  private aggregate(): HealthResult {
    const inRotation = this.members.filter((member) => member.ejectedUntil === undefined);
    const answers = inRotation.flatMap((member) => (member.health?.ok ? [member.health.health] : []));
    const [first] = answers;
    if (!first) return { ok: false, status: "unreachable", error: fail.noServerAvailable().message };
    const status = inRotation.some((member) => this.stateOf(member) === "up") ? "healthy" : first.status;
    return {
      ok: true,
      health: {
        status,
        model_loaded: anyTrue(answers.map((health) => health.model_loaded)),
        cuda_available: anyTrue(answers.map((health) => health.cuda_available)),
        current_queue_size: sum(answers.map((health) => health.current_queue_size)),
        active_generations: sum(answers.map((health) => health.active_generations)),
        available_slots: sum(answers.map((health) => health.available_slots)),
      },
    };
  }
}

/** It answered, and said "healthy" or nothing of its status (an older server: unknown, not down). */
function serves(result: HealthResult): boolean {
  return result.ok && canGenerate(result.health);
}

/** The share of a server's capacity this gateway uses; a server with none free comes after every other. */
function load(member: Member, fallback: number): number {
  const capacity = member.capacity ?? fallback;
  if (capacity <= 0) return Infinity;
  return member.inFlight / capacity;
}

/** The GPU server's own timeout: its answer came, but the genuine server's executor goes on. */
function timedOutThere(error: unknown): boolean {
  return error instanceof GatewayError && error.code === "upstream_status" && error.status === 504;
}

function answered(error: unknown): boolean {
  return error instanceof GatewayError && (error.code === "upstream_status" || error.code === "upstream_credentials");
}

/** Failures that count toward ejection: no connection, a lost one, no answer in time, a 5xx, refused credentials (it cannot serve this gateway). */
function countsAsFailure(error: unknown): boolean {
  if (!(error instanceof GatewayError)) return false;
  switch (error.code) {
    case "upstream_unavailable":
    case "upstream_transport":
    case "upstream_timeout":
    case "upstream_credentials":
      return true;
    case "upstream_status":
      return isServerError(error);
    default:
      return false;
  }
}

function isServerError(error: GatewayError): boolean {
  return error.code === "upstream_status" && error.status >= 500;
}

/** Outcomes that say nothing of the server: the client left, or the gateway itself failed. */
function isNeutral(error: unknown): boolean {
  return error !== undefined && (!(error instanceof GatewayError) || error.code === "client_closed" || error.code === "internal");
}

function reported(result: HealthResult | undefined): ServerState["health"] {
  if (result === undefined) return null;
  return reportedHealth(result);
}

function anyTrue(values: (boolean | null)[]): boolean | null {
  if (values.includes(true)) return true;
  return values.includes(false) ? false : null;
}

function sum(values: (number | null)[]): number | null {
  const known = values.filter((value) => value !== null);
  return known.length === 0 ? null : known.reduce((total, value) => total + value, 0);
}
