/**
 * Jobs, the pipeline's third door: a generation that lives as long as its job,
 * not a connection. It follows the GPU server's /generate-stream whether or
 * not anyone listens, keeps each event (the image as a file, by URL in the
 * job's output) and ends succeeded, failed or canceled. Listeners hear each
 * event as it is kept; a stream resumed later reads the rest from the store.
 */
import { GatewayError, fail } from "../errors";
import { parseJsonObject } from "../http";
import { Generation } from "../pipeline";
import type { GenerationObserver } from "../pipeline";
import type { Registry } from "../registry";
import { requestJson } from "../schemas";
import type { GenerateRequest } from "../schemas";
import { answerImage } from "../upstream/image";
import { FINISHED } from "./store";
import type { Job, JobEvent, JobOutput, JobStore } from "./store";

type Listener = (event: JobEvent, job: Job) => void;

/** The longest between two retention sweeps. */
const SWEEP_MS = 10 * 60 * 1000;

export class JobRunner {
  private readonly cancels = new Map<string, AbortController>();
  private readonly listeners = new Map<string, Set<Listener>>();

  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly gateway: Registry,
    readonly store: JobStore,
  ) {}

  /**
   * At start: what a previous process left queued runs now; what it left
   * running has failed (JobStore.recover). From now on, jobs past JOB_TTL go,
   * and the oldest ones while the images take more than DATA_MAX_BYTES.
   */
  resume(): void {
    this.sweep();
    this.sweeper ??= setInterval(() => {
      this.sweep();
    }, Math.min(this.gateway.config.jobTtlMs / 10, SWEEP_MS)).unref();
    const { requeued, failed } = this.store.recover(new Date());
    for (const job of failed) this.emit(job.id, { type: "error", kind: job.error?.kind, detail: job.error?.detail });
    for (const job of requeued) void this.start(job);
  }

  /**
   * A new queued job for `owner`, started; or the job its idempotency key
   * already names (`created` false). A full queue is the usual 503, and
   * nothing is created.
   */
  submit(owner: string, request: GenerateRequest, idempotencyKey?: string): { job: Job; created: boolean; input: string; placed: Promise<void> } {
    const input = requestJson(request);
    const known = idempotencyKey === undefined ? undefined : this.store.find(owner, idempotencyKey);
    if (known) return { job: known, created: false, input, placed: Promise.resolve() };
    const load = this.gateway.limiter.stats();
    if (load.in_flight >= load.max_concurrent && load.queued >= this.gateway.config.maxQueue) throw fail.queueFull();
    const created = this.store.create(owner, input, idempotencyKey);
    const placed = created.created ? this.start(created.job) : Promise.resolve();
    return { ...created, input, placed };
  }

  /**
   * A generation made elsewhere (the OpenAI door's `url` answers), kept as a
   * succeeded job of `owner`: its image is in the store for JOB_TTL, by URL,
   * and in the owner's list.
   */
  keep(owner: string, request: GenerateRequest, answer: Buffer): Job {
    const { job } = this.store.create(owner, requestJson(request));
    const output = this.keepImage(answer);
    this.finish(job.id, { status: "succeeded", started_at: job.created_at, output }, { type: "complete", output });
    return this.store.get(job.id) as Job;
  }

  /** Stops the retention sweep (the store is closed after). */
  close(): void {
    clearInterval(this.sweeper);
  }

  private sweep(): void {
    this.store.expire(new Date(Date.now() - this.gateway.config.jobTtlMs));
    this.store.trim(this.gateway.config.dataMaxBytes);
  }

  /** Cancels a job that has not finished: a queued one never reaches the GPU, a running one's upstream call is aborted. */
  cancel(id: string): Job | undefined {
    const job = this.store.get(id);
    if (!job || FINISHED.has(job.status)) return job;
    this.finish(id, { status: "canceled" }, { type: "canceled" });
    this.cancels.get(id)?.abort(fail.clientClosed("the job was canceled"));
    return this.store.get(id);
  }

  /** Hears the job's events from now on, until the returned function is called. */
  listen(id: string, listener: Listener): () => void {
    let set = this.listeners.get(id);
    if (!set) this.listeners.set(id, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(id);
    };
  }

  /**
   * Runs the job; the promise settles once it has its place: in line (with
   * its queue_position), running, or finished. With the local limiter that is
   * within the same turn; with Redis, one round trip.
   */
  private start(job: Job): Promise<void> {
    const cancel = new AbortController();
    this.cancels.set(job.id, cancel);
    let placed = () => {};
    const place = new Promise<void>((resolve) => (placed = resolve));
    void this.run(job, cancel.signal, placed).finally(() => {
      this.cancels.delete(job.id);
      placed();
    });
    return place;
  }

  private async run(job: Job, canceled: AbortSignal, placed: () => void): Promise<void> {
    const observer: GenerationObserver = {
      generating: () => undefined,
      begin: (phase) => {
        if (phase === "upstream") {
          placed();
          const startedAt = new Date();
          this.store.update(job.id, { status: "running", started_at: startedAt.toISOString() });
          this.gateway.metrics.jobQueueWait.observe((startedAt.getTime() - Date.parse(job.created_at)) / 1000);
        }
        return () => undefined;
      },
      upstreamContext: () => ({ requestId: job.id }),
      failedWith: () => undefined,
    };
    let generation: Generation | undefined;
    try {
      generation = new Generation(this.gateway, canceled, observer);
      // The input is what the job was created with: the seed's digits kept, read back as JsonNumbers.
      await generation.accept(() => Promise.resolve(parseJsonObject(Buffer.from(job.input))));
      const events = await generation.events((position) => {
        this.emit(job.id, { type: "queued", queue_position: position });
        placed();
      });
      for await (const event of events) {
        if (event.data === undefined) continue;
        if (event.type === "complete") {
          const output = this.keepImage(event.data);
          this.finish(job.id, { status: "succeeded", output }, { type: "complete", output });
        } else if (event.type === "error") {
          const { message } = JSON.parse(event.data.toString("utf8")) as { message?: unknown };
          const detail = typeof message === "string" ? message : "";
          this.finish(job.id, { status: "failed", error: { kind: "upstream_status", detail } }, { type: "error", kind: "upstream_status", detail });
        } else {
          this.emit(job.id, event.data.toString("utf8"));
        }
      }
    } catch (error) {
      const known = error instanceof GatewayError ? error : fail.internal(error);
      if (known.code !== "client_closed") {
        const detail = typeof known.detail === "string" ? known.detail : JSON.stringify(known.detail);
        this.finish(job.id, { status: "failed", error: { kind: known.code, detail } }, { type: "error", kind: known.code, detail });
      }
    } finally {
      generation?.close();
    }
  }

  private keepImage(data: Buffer): JobOutput {
    const image = answerImage(data);
    this.store.putImage(image.bytes, image.contentType);
    const number = (value: unknown) => (typeof value === "number" ? value : null);
    return {
      sha256: image.sha256,
      content_type: image.contentType,
      bytes: image.bytes.length,
      width: number(image.fields.width),
      height: number(image.fields.height),
      seed: image.seed ?? null,
      generation_time_ms: number(image.fields.generation_time_ms),
      image_id: typeof image.fields.image_id === "string" ? image.fields.image_id : null,
    };
  }

  /** Ends the job (once: a later end, a late upstream event after a cancel say, is dropped) with its terminal event. */
  private finish(id: string, change: Parameters<JobStore["update"]>[1], event: Record<string, unknown>): void {
    if (this.store.update(id, { ...change, completed_at: new Date().toISOString() })) this.emit(id, event);
  }

  private emit(id: string, event: Record<string, unknown> | string): void {
    const kept = this.store.append(id, typeof event === "string" ? event : JSON.stringify(event));
    const job = this.store.get(id);
    const listeners = this.listeners.get(id);
    if (!job || !listeners) return;
    for (const listener of [...listeners]) listener(kept, job);
  }
}
