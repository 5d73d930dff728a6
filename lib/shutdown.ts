/**
 * Graceful shutdown: the process-wide registry of generations in flight, and
 * the drain that SIGTERM and SIGINT start (see lib/startup.ts). Once draining,
 * nothing new is admitted (503), requests still waiting for a slot get the
 * same 503, and generations already running may finish within the grace
 * period; then they are cut off, upstream call included, so the GPU stops.
 * The process's drain is its registry's (lib/registry.ts).
 */
import { fail } from "./errors";

/** How a drain ended: nothing was in flight, everything finished, the rest was cut off, or it did not end in time. */
export type DrainOutcome = "idle" | "drained" | "cut_off" | "gave_up";

/**
 * One generate request, counted in flight from its admission until it is
 * released, which must be once its response is closed (sent, or the client
 * gone): exiting earlier would cut the answer short.
 */
export class Work {
  private readonly waiting = new AbortController();
  private readonly running = new AbortController();
  private released = false;
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

  /** For the wait for a slot: aborts when the client leaves or the drain starts. */
  get queueSignal(): AbortSignal {
    return this.waiting.signal;
  }

  /** For the upstream call: aborts when the client leaves or the grace period ends. */
  get signal(): AbortSignal {
    return this.running.signal;
  }

  /** The drain has started: a request still waiting for a slot gives up. */
  stop(): void {
    this.abort(this.waiting);
  }

  /** The grace period is over: whatever still runs is aborted. */
  cut(): void {
    this.abort(this.waiting);
    this.abort(this.running);
  }

  /** Leaves the registry; only the first call counts. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.client.removeEventListener("abort", this.onClientGone);
    this.onRelease(this);
  }

  private abort(controller: AbortController): void {
    if (controller.signal.aborted) return;
    controller.abort(fail.shuttingDown());
  }
}

/** The registry and its drain. */
export class Drain {
  private readonly works = new Set<Work>();
  private drained: Promise<DrainOutcome> | undefined;
  private onIdle: (() => void) | undefined;

  get draining(): boolean {
    return this.drained !== undefined;
  }

  get inFlight(): number {
    return this.works.size;
  }

  /**
   * Admits one generation into the registry, or throws the 503 once the drain
   * has begun. `client` aborts when its client goes away.
   */
  beginWork(client: AbortSignal): Work {
    if (this.draining) throw fail.shuttingDown();
    const work = new Work(client, (done) => {
      this.works.delete(done);
      if (this.works.size === 0) this.onIdle?.();
    });
    this.works.add(work);
    return work;
  }

  /**
   * Stops admitting, lets the work in flight finish for `graceMs`, then cuts
   * it off and gives it `settleMs` to answer. Later calls get the first one's outcome.
   */
  drain(graceMs: number, settleMs: number): Promise<DrainOutcome> {
    this.drained ??= this.run(graceMs, settleMs);
    return this.drained;
  }

  private async run(graceMs: number, settleMs: number): Promise<DrainOutcome> {
    if (this.works.size === 0) return "idle";
    const idle = new Promise<void>((resolve) => {
      this.onIdle = resolve;
    });
    for (const work of [...this.works]) work.stop();
    if (await settlesWithin(idle, graceMs)) return "drained";
    for (const work of [...this.works]) work.cut();
    return (await settlesWithin(idle, settleMs)) ? "cut_off" : "gave_up";
  }
}

/** Whether `promise` settles within `ms`; the timer never outlives the answer. */
export async function settlesWithin(promise: Promise<unknown> | undefined, ms: number): Promise<boolean> {
  if (promise === undefined) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => {
      resolve(false);
    }, ms);
  });
  try {
    // A rejection is an end too: what failed to close is not waited for.
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
