import { GatewayError, fail } from "../errors";
import type { GenerateRequest, ServerState } from "../schemas";
import { UpstreamServer, neverSent } from "./server";
import type { CallContext, HealthResult, OpenResponse, UpstreamOptions } from "./server";

export interface BalancerOptions extends UpstreamOptions {
  /** Generations one server may run at once through this gateway (MAX_CONCURRENT_PER_SERVER). */
  maxConcurrentPerServer: number;
  /** Time between background health probes of each server (several servers only). */
  healthIntervalMs: number;
  /** Connection failures or 5xx in a row that take a server out (EJECT_AFTER_FAILURES). */
  ejectAfterFailures: number;
  /** The first ejection's length; each further one in a row doubles it... */
  ejectBaseMs: number;
  /** ...up to this. */
  ejectMaxMs: number;
  /** The clock: tests replace it to step through ejection periods. */
  now?: () => number;
  /** Hears each ejection and return, for the logs. */
  onChange?: (change: ServerChange) => void;
}

export interface ServerChange {
  event: "ejected" | "rejoined";
  url: string;
  /** For an ejection: its length, and the failures in a row that caused it. */
  periodMs?: number;
  failures?: number;
}

/** How long one health answer serves every caller: /api/health pollers and the background probe alike. */
export const HEALTH_REUSE_MS = 1000;
/** The probe at the end of an ejection runs this much after it, so it finds the period over. */
const REJOIN_SLACK_MS = 10;

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
  /**
   * The slots it can give this gateway, by its latest probe: the
   * `available_slots` it reported plus this gateway's calls it was running
   * then. Null when unknown (no answer yet, or no such field).
   */
  capacity: number | null;
}

interface Waiter {
  tried: ReadonlySet<Member>;
  resolve: (member: Member | undefined) => void;
}

/**
 * The GPU servers behind the gateway, with the calls the gateway makes
 * (generate, generateStream, health, metrics). Each call goes to the server
 * with the most free capacity, below its cap; a server that fails
 * `ejectAfterFailures` times in a row is ejected for a period that doubles
 * with each ejection in a row (Envoy's outlier detection), never the last one
 * in rotation. Only a call that never reached a server fails over to another.
 * With one server it passes calls straight through: no background probe, no
 * ejection, no failover; its failures are the seed's errors, unchanged.
 */
export class Balancer {
  /** The servers' URLs without credentials, joined by commas. */
  readonly publicUrl: string;
  private readonly members: Member[];
  private readonly now: () => number;
  private readonly waiters: Waiter[] = [];
  /** Breaks ties between equally free servers in turn. */
  private turn = -1;
  private started = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    urls: readonly URL[],
    private readonly options: BalancerOptions,
  ) {
    if (urls.length === 0) throw new RangeError("a balancer needs at least one server");
    this.now = options.now ?? Date.now;
    this.members = urls.map((url, index) => ({
      server: new UpstreamServer(url, { ...options, maxConcurrent: options.maxConcurrentPerServer }),
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
    }));
    this.publicUrl = this.members.map((member) => member.server.publicUrl).join(",");
  }

  /** How many servers there are. */
  get size(): number {
    return this.members.length;
  }

  /** POST /generate on the freest server; see UpstreamServer.generate. */
  generate(request: GenerateRequest, signal: AbortSignal, context: CallContext = {}): Promise<Buffer[]> {
    return this.attempt(signal, async (member) => {
      try {
        const answer = await member.server.generate(request, signal, context);
        this.settle(member);
        return answer;
      } catch (error) {
        this.settle(member, error);
        throw error;
      }
    });
  }

  /** POST /generate-stream on the freest server; the server counts as busy until the stream's close(). */
  generateStream(request: GenerateRequest, signal: AbortSignal, context: CallContext = {}): Promise<OpenResponse> {
    return this.attempt(signal, async (member) => {
      let response: OpenResponse;
      try {
        response = await member.server.generateStream(request, signal, context);
      } catch (error) {
        this.settle(member, error);
        throw error;
      }
      return this.tracked(member, response);
    });
  }

  /**
   * The GPU servers' health, never throwing: one server's own answer, or with
   * several an aggregate of those in rotation that answered. Coalesced per
   * server with the background probe: callers during a probe share it, and an
   * answer serves everyone for HEALTH_REUSE_MS.
   */
  async health(): Promise<HealthResult> {
    this.start();
    const [only] = this.members;
    if (only && this.members.length === 1) return this.probe(only, HEALTH_REUSE_MS);
    await Promise.all(this.members.map((member) => this.probe(member, HEALTH_REUSE_MS)));
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
      health: reported(member.health),
    }));
  }

  /**
   * GET /metrics. One server: its JSON bytes, or its failure thrown. Several:
   * `{"servers": {"<url>": <its JSON> | {"error": "..."}}}`, never throwing.
   */
  async metrics(): Promise<Buffer> {
    const [only] = this.members;
    if (only && this.members.length === 1) return only.server.metrics();
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
    for (const member of this.members) clearTimeout(member.rejoinTimer);
    for (const waiter of this.waiters.splice(0)) waiter.resolve(undefined);
    await Promise.all(this.members.map((member) => member.server.close()));
  }

  /**
   * Runs `run` on the freest server. A failure that never reached the server
   * (see `neverSent`) is tried on the next one; when no server is left, the
   * answer is 503 at once. Every other failure is the caller's answer.
   */
  private async attempt<T>(signal: AbortSignal, run: (member: Member) => Promise<T>): Promise<T> {
    this.start();
    const tried = new Set<Member>();
    let lastError: unknown;
    for (;;) {
      const member = await this.reserve(tried, signal);
      if (!member) throw fail.noServerAvailable(lastError);
      try {
        return await run(member);
      } catch (error) {
        if (this.members.length === 1 || !neverSent(error)) throw error;
        tried.add(member);
        lastError = error;
      }
    }
  }

  /**
   * A server for one call, counted as in flight: at once when one has room,
   * else once one does (only when MAX_CONCURRENT_PER_SERVER is below the
   * gateway's total). Undefined when every server is ejected or tried.
   */
  private reserve(tried: ReadonlySet<Member>, signal: AbortSignal): Promise<Member | undefined> {
    const member = this.pick(tried);
    if (member || !this.anyLeft(tried)) return Promise.resolve(member);
    if (signal.aborted) return Promise.reject(fail.clientClosed(signal.reason));
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(fail.clientClosed(signal.reason));
      };
      const waiter: Waiter = {
        tried,
        resolve: (found) => {
          signal.removeEventListener("abort", onAbort);
          resolve(found);
        },
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Takes the best server in rotation below its cap, not yet tried by this call, and counts the call on it. */
  private pick(tried: ReadonlySet<Member>): Member | undefined {
    const count = this.members.length;
    this.turn = (this.turn + 1) % count;
    const fallback = this.typicalCapacity();
    let best: Member | undefined;
    for (const member of this.members) {
      if (member.ejectedUntil !== undefined || tried.has(member)) continue;
      if (member.inFlight >= this.options.maxConcurrentPerServer) continue;
      if (!best || this.better(member, best, fallback)) best = member;
    }
    if (best) best.inFlight++;
    return best;
  }

  /**
   * The order of choice: a server whose probe said it serves before one whose
   * probe failed; then the smallest share of its capacity in use by this
   * gateway (in flight / capacity: the fewest in flight, weighted by its
   * slots); then the fewest in flight; then in turn. An idle server is a tie
   * whatever its capacity, so light traffic goes round in turn and a slightly
   * stale capacity cannot pull it all to one server.
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

  private anyLeft(tried: ReadonlySet<Member>): boolean {
    return this.members.some((member) => member.ejectedUntil === undefined && !tried.has(member));
  }

  /** A call on `member` ended: frees its place and counts the outcome toward ejection. */
  private settle(member: Member, error?: unknown): void {
    member.inFlight--;
    if (countsAsFailure(error)) {
      this.failed(member);
    } else if (!isNeutral(error)) {
      member.failures = 0;
    }
    this.drain();
  }

  /** The stream, with `member` busy until its body ends or it is closed, whichever comes first. */
  private tracked(member: Member, response: OpenResponse): OpenResponse {
    let settled = false;
    const settle = (error?: unknown) => {
      if (settled) return;
      settled = true;
      this.settle(member, error);
    };
    async function* chunks(): AsyncGenerator<Buffer> {
      try {
        for await (const chunk of response.chunks) yield chunk;
      } catch (error) {
        settle(error);
        throw error;
      } finally {
        settle();
      }
    }
    return {
      chunks: chunks(),
      close: () => {
        response.close();
        settle();
      },
    };
  }

  /** One more failure in a row; enough of them take the server out. */
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
    this.drain();
  }

  /** Hands freed or returned servers to waiting calls, first come first served. */
  private drain(): void {
    for (const waiter of [...this.waiters]) {
      const member = this.pick(waiter.tried);
      if (!member && this.anyLeft(waiter.tried)) continue;
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      waiter.resolve(member);
    }
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
    const maxAgeMs = Math.min(HEALTH_REUSE_MS, this.options.healthIntervalMs / 2);
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
   * A probe's answer. A refused connection or a 5xx counts toward ejection as
   * a call's would, so a dead server goes out even with no traffic; a good
   * answer does not clear the count (only a served call does), or a server
   * failing every generation but answering /health would never go.
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
    this.drain();
  }

  private stateOf(member: Member): ServerState["state"] {
    if (member.ejectedUntil !== undefined) return "ejected";
    return member.health === undefined || serves(member.health) ? "up" : "down";
  }

  /**
   * One health answer for several servers, from those in rotation that
   * answered: "healthy" when one of them serves, else the first one's status;
   * model and CUDA true when one says so; queue, generations and slots summed.
   */
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

/**
 * A probe that lets a server serve: it answered and said "healthy" (or said
 * nothing of its status, as an older server may: the contract treats a
 * missing field as unknown, not as down).
 */
function serves(result: HealthResult): boolean {
  return result.ok && (result.health.status === "healthy" || result.health.status === "unknown");
}

/** The share of a server's capacity this gateway uses; a server with none free comes after every other. */
function load(member: Member, fallback: number): number {
  const capacity = member.capacity ?? fallback;
  if (capacity <= 0) return Infinity;
  return member.inFlight / capacity;
}

/** Failures that count toward ejection: no connection, a lost one, no answer in time, a 5xx. */
function countsAsFailure(error: unknown): boolean {
  if (!(error instanceof GatewayError)) return false;
  switch (error.code) {
    case "upstream_unavailable":
    case "upstream_transport":
    case "upstream_timeout":
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
  return result.ok ? result.health : { status: result.status, error: result.error };
}

function anyTrue(values: (boolean | null)[]): boolean | null {
  if (values.includes(true)) return true;
  return values.includes(false) ? false : null;
}

function sum(values: (number | null)[]): number | null {
  const known = values.filter((value) => value !== null);
  return known.length === 0 ? null : known.reduce((total, value) => total + value, 0);
}
