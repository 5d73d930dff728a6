/**
 * Outlier ejection (Envoy's): a server that fails `ejectAfterFailures` times in
 * a row goes out of rotation for a period that doubles with each ejection in a
 * row, never the last one in; it returns at the first good probe after it.
 * What counts as a failure is read from the error here.
 */
import { ERRORS, GatewayError, traitsOf } from "../errors";
import { inRotation } from "./member";
import type { Member } from "./member";

export interface EjectionOptions {
  /** Connection failures or 5xx in a row that take a server out (EJECT_AFTER_FAILURES). */
  ejectAfterFailures: number;
  /** The first ejection's length, doubled for each further one in a row up to ejectMaxMs. */
  ejectBaseMs: number;
  ejectMaxMs: number;
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

export class Ejection {
  constructor(
    private readonly members: readonly Member[],
    private readonly options: EjectionOptions & {
      now: () => number;
      closed: () => boolean;
      /** Probes a server now (at the end of its period). */
      probe: (member: Member) => void;
      onChange?: (change: ServerChange) => void;
      /** The servers in rotation changed. */
      onRotation: () => void;
    },
  ) {}

  /**
   * A call's outcome: a failure counts (lib/errors.ts: no connection, a lost
   * one, no answer in time, refused credentials; and a 5xx), a served call
   * clears the count, and what says nothing of the server (the client left,
   * the gateway itself failed) leaves it.
   */
  judge(member: Member, error?: unknown): void {
    if (error instanceof GatewayError && (ERRORS[error.code].ejects === true || isServerError(error))) this.failed(member);
    else if (error === undefined || traitsOf(error).neutral !== true) member.failures = 0;
  }

  failed(member: Member): void {
    member.failures++;
    if (member.failures >= this.options.ejectAfterFailures) this.eject(member);
  }

  /** Back in rotation once its period is over and a probe says it serves. */
  rejoin(member: Member, now: number): void {
    if (member.ejectedUntil === undefined || now < member.ejectedUntil) return;
    member.ejectedUntil = undefined;
    member.failures = 0;
    member.rejoinedAt = now;
    clearTimeout(member.rejoinTimer);
    this.options.onChange?.({ event: "rejoined", url: member.server.publicUrl });
    this.options.onRotation();
  }

  /** Takes `member` out of rotation, unless it is the last one in. */
  private eject(member: Member): void {
    if (this.options.closed() || member.ejectedUntil !== undefined) return;
    if (inRotation(this.members).length <= 1) return;
    const now = this.options.now();
    const period = (streak: number) => Math.min(this.options.ejectBaseMs * 2 ** (streak - 1), this.options.ejectMaxMs);
    if (member.rejoinedAt !== undefined && now - member.rejoinedAt >= period(member.streak)) member.streak = 0;
    member.streak++;
    const periodMs = period(member.streak);
    member.ejectedUntil = now + periodMs;
    member.ejections++;
    clearTimeout(member.rejoinTimer);
    member.rejoinTimer = setTimeout(() => {
      this.options.probe(member);
    }, periodMs + REJOIN_SLACK_MS).unref();
    this.options.onChange?.({ event: "ejected", url: member.server.publicUrl, periodMs, failures: member.failures });
    this.options.onRotation();
  }
}

export function isServerError(error: GatewayError): boolean {
  return error.code === "upstream_status" && error.status >= 500;
}
