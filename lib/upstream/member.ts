/** One GPU server as the balancer keeps it, and the generations this gateway sent it. */
import type { Slot } from "../limiter/types";
import type { HealthResult, UpstreamServer } from "./server";

/** One generation this gateway sent to a server, from the send until the server is done with it. */
export interface Call {
  readonly sentAt: number;
  /** The limiter's slot: freed with the call, unless the call is tried again elsewhere. */
  readonly slot: Slot;
  /** Set when the gateway stopped waiting while the server may still run it (lib/upstream/orphans.ts). */
  orphanedAt: number | undefined;
  /** An orphan the server's load no longer counts (it timed the call out itself): only its deadline frees it. */
  unseen: boolean;
  timer: NodeJS.Timeout | undefined;
}

export class Member {
  /** Counted failures (connection failures, 5xx) in a row. */
  failures = 0;
  /** Set while ejected: when the period ends. The server returns at the first good probe after it. */
  ejectedUntil: number | undefined;
  ejections = 0;
  /** Ejections in a row, each doubling the period; forgotten once the server stays in as long as its last one lasted. */
  streak = 0;
  rejoinedAt: number | undefined;
  rejoinTimer: NodeJS.Timeout | undefined;
  health: HealthResult | undefined;
  probedAt = 0;
  probing: Promise<HealthResult> | undefined;
  /** By its latest probe: the `available_slots` it reported plus this gateway's calls it ran then; null when unknown. */
  capacity: number | null = null;
  /** Generations sent to it and not done with, in the order they were sent. */
  readonly calls = new Set<Call>();
  /** True while its orphans are being watched. */
  watching = false;

  constructor(
    readonly server: UpstreamServer,
    readonly index: number,
  ) {}
}

/** The call is over for the server: its place is free, and the limiter's slot unless the call goes on elsewhere (`slot` false). */
export function release(member: Member, call: Call, slot = true): void {
  if (!member.calls.delete(call)) return;
  clearTimeout(call.timer);
  if (slot) call.slot.release();
}

export function inRotation(members: readonly Member[]): Member[] {
  return members.filter((member) => member.ejectedUntil === undefined);
}
