/**
 * Graceful shutdown: the generations in flight, and the drain SIGTERM starts.
 * Once draining, nothing new is admitted and waiters get the 503; running ones
 * may finish within the grace period, then are cut off, upstream call included.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { fail } from "./errors";

/** How a drain ended: nothing was in flight, everything finished, the rest was cut off, or it did not end in time. */
export type DrainOutcome = "idle" | "drained" | "cut_off" | "gave_up";

/** One generate request, in flight from its admission until released once its response is closed: exiting earlier would cut it short. */
export class Work {
  private readonly waiting = new AbortController();
  private readonly running = new AbortController();
  /** For the wait for a slot: aborts when the client leaves or the drain starts. */
  readonly queueSignal = this.waiting.signal;
  /** For the upstream call: aborts when the client leaves or the grace period ends. */
  readonly signal = this.running.signal;
  private readonly onClientGone = () => {
    this.waiting.abort(this.client.reason);
    this.running.abort(this.client.reason);
  };

  constructor(
    private readonly client: AbortSignal,
    private readonly onRelease: (work: Work) => void,
  ) {
    if (client.aborted) this.onClientGone();
    else client.addEventListener("abort", this.onClientGone, { once: true });
  }

  /** The drain has started: a request still waiting for a slot gives up (a signal aborted already keeps its reason). */
  stop(): void {
    this.waiting.abort(fail.shuttingDown());
  }

  /** The grace period is over: whatever still runs is aborted. */
  cut(): void {
    this.stop();
    this.running.abort(fail.shuttingDown());
  }

  /** Leaves the registry; only the first call counts (the registry's Set forgets it once). */
  release(): void {
    this.client.removeEventListener("abort", this.onClientGone);
    this.onRelease(this);
  }
}

/** The registry and its drain. */
export class Drain {
  private readonly works = new Set<Work>();
  private drained: Promise<DrainOutcome> | undefined;
  private onIdle: (() => void) | undefined;
  /** One for every Work, not a closure made per request. */
  private readonly release = (work: Work) => {
    if (this.works.delete(work) && this.works.size === 0) this.onIdle?.();
  };

  get draining(): boolean {
    return this.drained !== undefined;
  }

  get inFlight(): number {
    return this.works.size;
  }

  /** Admits one generation, or throws the 503 once draining; `client` aborts when its client goes. */
  beginWork(client: AbortSignal): Work {
    if (this.draining) throw fail.shuttingDown();
    const work = new Work(client, this.release);
    this.works.add(work);
    return work;
  }

  /** Stops admitting, lets work finish for `graceMs`, then cuts it off with `settleMs` to answer; later calls get the first outcome. */
  drain(graceMs: number, settleMs: number): Promise<DrainOutcome> {
    this.drained ??= this.run(graceMs, settleMs);
    return this.drained;
  }

  private async run(graceMs: number, settleMs: number): Promise<DrainOutcome> {
    if (this.works.size === 0) return "idle";
    const { promise: idle, resolve }: PromiseWithResolvers<void> = Promise.withResolvers();
    this.onIdle = resolve;
    for (const work of [...this.works]) work.stop();
    if (await settlesWithin(idle, graceMs)) return "drained";
    for (const work of [...this.works]) work.cut();
    return (await settlesWithin(idle, settleMs)) ? "cut_off" : "gave_up";
  }
}

/** Whether `promise` settles within `ms`; the timer never outlives the answer. */
export async function settlesWithin(promise: Promise<unknown> | undefined, ms: number): Promise<boolean> {
  if (promise === undefined) return true;
  const timeout = new AbortController();
  try {
    // A rejection is an end too: what failed to close is not waited for.
    return await Promise.race([promise.then(() => true, () => true), sleep(ms, false, { signal: timeout.signal })]);
  } finally {
    timeout.abort();
  }
}
