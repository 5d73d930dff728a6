/**
 * The orphan rule, the reason the GPU stays within its limit when the server
 * ignores a closed connection. The gateway stopped waiting for a call (client
 * gone, a deadline, a broken stream), but the genuine server never looks at
 * the connection and runs every queued generation to its end. So the call
 * keeps its place and its limiter slot, and the limit still bounds what the
 * server runs, until the server's own load shows it done, and at most
 * REQUEST_TIMEOUT; an `unseen` one (the server timed it out itself, so its load
 * no longer counts it) for REQUEST_TIMEOUT, or until the server is gone.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { release } from "./member";
import type { Call, Member } from "./member";
import type { Probes } from "./probes";
import { neverSent } from "./server";
import type { HealthResult } from "./server";

export interface OrphanEnd {
  url: string;
  /** How long its slot was held after the gateway stopped waiting for it. */
  heldMs: number;
  /** "finished": the server's load says it is done; "timeout": REQUEST_TIMEOUT passed first; "server gone": connections refused. */
  reason: "finished" | "timeout" | "server gone";
}

/** A server with orphans is probed soon after, for one that stops on a closed connection, then at this interval. */
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

export class Orphans {
  constructor(
    private readonly probes: Probes,
    private readonly options: { requestTimeoutMs: number; now: () => number; closed: () => boolean; onOrphanEnd?: (end: OrphanEnd) => void },
  ) {}

  /** The call goes on without its caller: its place and slot stay taken until the server is seen done with it. */
  orphan(member: Member, call: Call, { unseen = false } = {}): void {
    if (!member.calls.has(call) || call.orphanedAt !== undefined) return;
    call.orphanedAt = this.options.now();
    call.unseen = unseen;
    call.timer = setTimeout(() => {
      this.giveUp(member, call, "timeout");
    }, this.options.requestTimeoutMs).unref();
    void this.watch(member);
  }

  of(member: Member): Call[] {
    return [...member.calls].filter((call) => call.orphanedAt !== undefined);
  }

  private giveUp(member: Member, call: Call, reason: OrphanEnd["reason"]): void {
    if (!member.calls.has(call) || call.orphanedAt === undefined) return;
    this.options.onOrphanEnd?.({ url: member.server.publicUrl, heldMs: this.options.now() - call.orphanedAt, reason });
    release(member, call);
  }

  /** Probes a server while it has orphans, and lets go of those its load says are done. */
  private async watch(member: Member): Promise<void> {
    if (member.watching) return;
    member.watching = true;
    try {
      for (let wait = ORPHAN_FIRST_PROBE_MS; ; wait = ORPHAN_PROBE_MS) {
        await sleep(wait, undefined, { ref: false });
        if (this.options.closed() || this.of(member).length === 0) return;
        const askedAt = this.options.now();
        await this.count(member, await this.probes.ask(member), askedAt);
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
  private async count(member: Member, result: HealthResult, askedAt: number): Promise<void> {
    if (!result.ok) {
      if (result.failure && neverSent(result.failure)) for (const call of this.of(member)) this.giveUp(member, call, "server gone");
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
}
