/**
 * A job's log as the runner writes it: each event kept in the store and told
 * to the job's listeners (with a shared store, every gateway's).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { GatewayError } from "../errors";
import type { Metrics } from "../observe/metrics";
import type { JobLogEntry, JobStore, Listener } from "./types";

/** Events kept per job: a generation sends a few dozen; a server that sends more is heard live, not kept. */
const MAX_EVENTS = 100;
/** The pauses of a write waiting for an unreachable store: from a quarter second, doubling, at most 5 s. */
const STORE_RETRY_MS = 250;
const MAX_STORE_RETRY_MS = 5000;

function unavailable(error: unknown): boolean {
  return error instanceof GatewayError && error.code === "store_unavailable";
}

/**
 * A write that must not be lost (a job's end, its image), tried again while
 * the store is unreachable (a shared one's Redis down) until it answers, or
 * until `closing` aborts: this gateway's heartbeat then lapses, and another
 * gateway ends the job as lost.
 */
export async function stored<T>(write: () => Promise<T>, closing: AbortSignal): Promise<T> {
  for (let pause = STORE_RETRY_MS; ; pause = Math.min(2 * pause, MAX_STORE_RETRY_MS)) {
    try {
      return await write();
    } catch (error) {
      if (!unavailable(error) || closing.aborted) throw error;
    }
    await sleep(pause, undefined, { signal: closing }).catch(() => undefined);
  }
}

export class JobLog {
  private readonly listeners = new Map<string, Set<Listener>>();
  /** Each job's events are told one after another, so its listeners hear them in order. */
  private readonly turns = new Map<string, Promise<void>>();
  /** Queued jobs' places in line, as the limiter tells them. */
  private readonly places = new Map<string, number>();

  constructor(
    private readonly store: JobStore,
    private readonly metrics: Pick<Metrics, "jobEventsKept">,
    private readonly closing: AbortSignal,
  ) {
    store.shared?.onEvent((id, event) => void this.hear(id, event));
  }

  /** Hears the job's events from now on (with a shared store, whichever gateway appends them), until the returned function is called. */
  listen(id: string, listener: Listener): () => void {
    let set = this.listeners.get(id);
    if (!set) {
      this.listeners.set(id, (set = new Set()));
      this.store.shared?.watch(id);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      // The set emptied, and still the job's (not one made since by a later listen).
      if (set.size > 0 || this.listeners.get(id) !== set) return;
      this.listeners.delete(id);
      this.store.shared?.unwatch(id);
    };
  }

  /** A queued job's place in line now (its log keeps only the first), wherever it waits. */
  async placeOf(id: string): Promise<number | undefined> {
    return this.places.get(id) ?? (await this.store.shared?.placeOf(id));
  }

  /**
   * A place in line is kept once: each later one, for as long as the job
   * waits, is told to listeners only (kept, N waiting jobs would write N²
   * events). A log holds at most MAX_EVENTS, but for the end, which is always
   * kept, waiting for the store if it must.
   */
  async emit(id: string, event: Record<string, unknown> | string, { end = false } = {}): Promise<void> {
    const data = typeof event === "string" ? event : JSON.stringify(event);
    const place = typeof event === "object" && event.type === "queued" ? event.queue_position : undefined;
    let kept: JobLogEntry | undefined;
    const { shared } = this.store;
    if (typeof place === "number") {
      const first = !this.places.has(id);
      this.places.set(id, place);
      await shared?.setPlace(id, place);
      if (first) kept = await this.store.append(id, data, MAX_EVENTS);
      else await shared?.tell(id, data);
    } else {
      this.places.delete(id);
      try {
        kept = end ? await stored(() => this.store.append(id, data), this.closing) : await this.store.append(id, data, MAX_EVENTS);
      } catch (error) {
        // A shared store's Redis unreachable: the generation goes on, this event unkept; its end waits for the store.
        if (!end && unavailable(error)) return;
        throw error;
      }
    }
    if (kept) this.metrics.jobEventsKept.inc();
    // A shared store tells every gateway's listeners, these ones included.
    if (!shared) await this.hear(id, kept ?? { seq: 0, data, live: true });
  }

  /** Tells the job's listeners the event, with the job as it is now. */
  private async hear(id: string, event: JobLogEntry): Promise<void> {
    const turn = (this.turns.get(id) ?? Promise.resolve()).then(async () => {
      const listeners = this.listeners.get(id);
      const job = listeners && (await this.store.get(id).catch(() => undefined));
      if (listeners && job) for (const listener of [...listeners]) listener(event, job);
    });
    this.turns.set(id, turn);
    await turn.finally(() => {
      if (this.turns.get(id) === turn) this.turns.delete(id);
    });
  }
}
