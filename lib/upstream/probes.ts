/**
 * The servers' health: one GET /health per server shared by everyone asking
 * meanwhile and reused while fresh (HEALTH_REUSE), a background probe with
 * several servers (HEALTH_INTERVAL), what each answer tells (capacity,
 * failures, a return to rotation), and the aggregate /api/health reports.
 */
import { fail } from "../errors";
import { canGenerate } from "../schemas";
import type { ServerState } from "../api-shapes";
import { isServerError } from "./ejection";
import type { Ejection } from "./ejection";
import { inRotation } from "./member";
import type { Member } from "./member";
import { neverSent } from "./server";
import type { HealthResult } from "./server";

export interface ProbeOptions {
  /** Time between background health probes of each server (several servers only). */
  healthIntervalMs: number;
  /** How long one health answer serves every caller (HEALTH_REUSE): /api/health pollers and the background probe alike. */
  healthReuseMs: number;
}

export class Probes {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly members: readonly Member[],
    private readonly ejection: Ejection,
    private readonly options: ProbeOptions & { now: () => number; closed: () => boolean },
  ) {}

  /** Starts the background probes on first use, with several servers only; the timer never keeps the process up. */
  start(): void {
    if (this.timer || this.members.length < 2 || this.options.closed()) return;
    this.timer = setInterval(() => {
      this.probeAll();
    }, this.options.healthIntervalMs).unref();
    this.probeAll();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async health(): Promise<HealthResult> {
    this.start();
    const [only] = this.members;
    if (only && this.members.length === 1) return this.probe(only, this.options.healthReuseMs);
    await Promise.all(this.members.map((member) => this.probe(member, this.options.healthReuseMs)));
    return this.aggregate();
  }

  /** GET /health of one server, shared by everyone asking meanwhile, and reused while younger than `maxAgeMs`. */
  probe(member: Member, maxAgeMs: number): Promise<HealthResult> {
    if (member.probing) return member.probing;
    if (member.health && this.options.now() - member.probedAt < maxAgeMs) return Promise.resolve(member.health);
    member.probing = this.ask(member).finally(() => {
      member.probing = undefined;
    });
    return member.probing;
  }

  /**
   * GET /health of one server now, and what its answer tells. A refused
   * connection or 5xx counts toward ejection, so a dead server goes out with no
   * traffic; a good answer does not clear the count (a served call does), or a
   * server failing every generation but /health would stay.
   */
  async ask(member: Member): Promise<HealthResult> {
    // The calls in flight as the probe leaves are the ones its answer most likely counts.
    const inFlight = member.calls.size;
    const result = await member.server.health();
    const now = this.options.now();
    const slots = result.ok ? result.health.available_slots : null;
    member.health = result;
    member.probedAt = now;
    member.capacity = slots === null ? null : Math.max(slots + inFlight, 0);
    if (!result.ok && result.failure && (neverSent(result.failure) || isServerError(result.failure))) this.ejection.failed(member);
    if (serves(result)) this.ejection.rejoin(member, now);
    return result;
  }

  stateOf(member: Member): ServerState["state"] {
    if (member.ejectedUntil !== undefined) return "ejected";
    return member.health === undefined || serves(member.health) ? "up" : "down";
  }

  /** The background probe: skips a server whose latest answer (to an /api/health poll, say) is fresh enough. */
  private probeAll(): void {
    const maxAgeMs = Math.min(this.options.healthReuseMs, this.options.healthIntervalMs / 2);
    for (const member of this.members) void this.probe(member, maxAgeMs);
  }

  /** For several servers, from those in rotation that answered: "healthy" if one serves; model and CUDA true if one says so; loads summed. */
  private aggregate(): HealthResult {
    const members = inRotation(this.members);
    const answers = members.flatMap((member) => (member.health?.ok ? [member.health.health] : []));
    const [first] = answers;
    if (!first) return { ok: false, status: "unreachable", error: fail.noServerAvailable().message };
    const status = members.some((member) => this.stateOf(member) === "up") ? "healthy" : first.status;
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

function anyTrue(values: (boolean | null)[]): boolean | null {
  if (values.includes(true)) return true;
  return values.includes(false) ? false : null;
}

function sum(values: (number | null)[]): number | null {
  const known = values.filter((value) => value !== null);
  return known.length === 0 ? null : known.reduce((total, value) => total + value, 0);
}
