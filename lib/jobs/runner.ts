/**
 * Jobs, the pipeline's third door: a generation that lives as long as its job,
 * not a connection. It follows the GPU server's /generate-stream whether or
 * not anyone listens, keeps each event (the image as a file, by URL in the
 * job's output) and ends succeeded, failed or canceled. Listeners hear each
 * event as it is kept; a stream resumed later reads the rest from the store.
 */
import { setImmediate, setTimeout as sleep } from "node:timers/promises";
import { ERRORS, asGatewayError, fail } from "../errors";
import type { GatewayError } from "../errors";
import { parseJsonObject } from "../json-object";
import { Generation } from "../pipeline";
import type { GenerationObserver, GenerationParts } from "../pipeline";
import type { Logger } from "pino";
import type { Config } from "../config";
import type { Metrics } from "../observe/metrics";
import { requestJson } from "../schemas";
import type { GenerateRequest } from "../schemas";
import { answerImage } from "../upstream/image";
import type { AnswerImage } from "../upstream/image";
import { StorageSpace } from "./images";
import { JobLog, stored } from "./log";
import { FINISHED } from "./types";
import type { JobRecord, JobChange, JobError, StoredOutput, JobStore } from "./types";

/** The label jobs' metrics carry, as requests carry their route's. */
const JOBS_ROUTE = "/api/jobs";
/** Jobs removed per step of the retention sweep, the event loop free between steps. */
const SWEEP_BATCH = 200;
/** Finished jobs removed at most when a new one needs the room MAX_JOBS leaves. */
const THIN_BATCH = 16;
const SWEEP_MS = 10 * 60 * 1000;

/** What the jobs run on, handed down by the composition root (lib/registry.ts). */
export interface JobParts extends GenerationParts {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

export class JobRunner {
  readonly space: StorageSpace;
  readonly log: JobLog;
  private readonly cancels = new Map<string, AbortController>();
  private sweeping = false;
  private sweeper: NodeJS.Timeout | undefined;
  private recoverer: NodeJS.Timeout | undefined;
  /** Aborted by close(): writes waiting for the store give up. */
  private readonly closing = new AbortController();

  constructor(
    private readonly gateway: JobParts,
    readonly store: JobStore,
  ) {
    this.space = new StorageSpace(gateway.config.dataDir);
    this.log = new JobLog(store, gateway.metrics, this.closing.signal);
    // A job canceled on another gateway stops here, where it runs.
    store.shared?.onCancel((id) => {
      this.cancels.get(id)?.abort(fail.clientClosed("the job was canceled"));
    });
  }

  /**
   * At start: what a previous process left queued runs now; what it left
   * running has failed (JobStore.recover). From now on, jobs past JOB_TTL go,
   * and the oldest ones while the images take more than DATA_MAX_BYTES.
   */
  async resume(): Promise<void> {
    void this.sweep();
    this.sweeper ??= setInterval(() => {
      void this.sweep();
    }, Math.min(this.gateway.config.jobTtlMs / 10, SWEEP_MS)).unref();
    await this.takeUp();
    const { shared } = this.store;
    // Shared, a gateway that stops answering leaves its jobs to the others: each looks for them now and then.
    if (!shared) return;
    this.recoverer ??= setInterval(() => {
      void this.takeUp().catch((error: unknown) => {
        this.gateway.logger.warn({ err: error }, "jobs: could not look for the jobs of a lost gateway");
      });
    }, shared.recoverEveryMs).unref();
  }

  /** Runs what the store gives back as queued, and tells the end of what it failed. */
  private async takeUp(): Promise<void> {
    const { requeued, failed } = await this.store.recover(new Date());
    for (const job of failed) if (job.error) await this.log.emit(job.id, errorEvent(job.error));
    for (const job of requeued) void this.start(job).place;
  }

  /**
   * A new queued job for `owner`, started, once it has its place (in line, or
   * running); or the job its idempotency key already names (`created` false).
   * A job the gateway refuses before it has a place (draining, a full queue,
   * no limiter) is not kept: the refusal is thrown, and the key stays free.
   * `running` settles when the job is done with here: a serverless function
   * must live until then (Vercel's waitUntil).
   */
  async submit(owner: string, request: GenerateRequest, idempotencyKey?: string): Promise<{ job: JobRecord; created: boolean; input: string; running?: Promise<void> }> {
    const input = requestJson(request);
    const known = idempotencyKey === undefined ? undefined : await this.store.find(owner, idempotencyKey);
    if (known) return { job: known, created: false, input };
    if (this.gateway.drain.draining) throw fail.shuttingDown();
    const load = this.gateway.limiter.stats();
    if (load.in_flight >= load.max_concurrent && load.queued >= this.gateway.config.maxQueue) throw fail.queueFull();
    await this.space.check();
    // Room for one more: the oldest finished job goes; with none finished, the store is full of work.
    const { maxJobs } = this.gateway.config;
    await this.store.thin(maxJobs - 1, THIN_BATCH);
    if ((await this.store.size()) >= maxJobs) throw fail.jobStoreFull(maxJobs);
    const created = await this.store.create(owner, input, idempotencyKey);
    if (!created.created) return { ...created, input };
    const { place, running } = this.start(created.job, { submitted: true });
    const refusal = await place;
    if (refusal) {
      await this.store.remove(created.job.id);
      throw refusal;
    }
    return { ...created, input, running };
  }

  /**
   * A generation made elsewhere (the OpenAI door's `url` answers), kept as a
   * succeeded job of `owner`: its image is in the store for JOB_TTL, by URL,
   * and in the owner's list.
   */
  async keep(owner: string, request: GenerateRequest, image: AnswerImage): Promise<JobRecord> {
    await this.space.check();
    await this.store.thin(this.gateway.config.maxJobs - 1, THIN_BATCH);
    const output = await this.keepImage(image);
    const { job } = await this.store.create(owner, requestJson(request));
    await this.finish(job.id, { status: "succeeded", started_at: job.created_at, output }, { type: "complete", output });
    return (await this.store.get(job.id)) ?? job;
  }

  /** Stops the retention sweep (the store is closed after). */
  close(): void {
    clearInterval(this.sweeper);
    clearInterval(this.recoverer);
    this.closing.abort();
    // What still waits here (a pause between tries) stops, queued: the next process runs it.
    for (const cancel of this.cancels.values()) cancel.abort(fail.shuttingDown());
  }

  /**
   * Jobs past JOB_TTL go, then the oldest while the images take more than
   * DATA_MAX_BYTES or more than MAX_JOBS are kept: a batch at a time, each an
   * indexed lookup, the event loop free between batches.
   */
  private async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const { jobTtlMs, dataMaxBytes, maxJobs } = this.gateway.config;
      const before = new Date(Date.now() - jobTtlMs);
      while ((await this.store.expire(before, SWEEP_BATCH)) === SWEEP_BATCH) await setImmediate();
      while ((await this.store.trim(dataMaxBytes, SWEEP_BATCH)) === SWEEP_BATCH) await setImmediate();
      while ((await this.store.thin(maxJobs, SWEEP_BATCH)) === SWEEP_BATCH) await setImmediate();
    } catch (error) {
      this.gateway.logger.error({ err: error }, "jobs: the retention sweep failed");
    } finally {
      this.sweeping = false;
    }
  }

  /** Cancels a job that has not finished: a queued one never reaches the GPU, a running one's upstream call is aborted. */
  async cancel(id: string): Promise<JobRecord | undefined> {
    const job = await this.store.get(id);
    if (!job || FINISHED.has(job.status)) return job;
    await this.finish(id, { status: "canceled" }, { type: "canceled" });
    this.cancels.get(id)?.abort(fail.clientClosed("the job was canceled"));
    await this.store.shared?.announceCancel(id);
    return this.store.get(id);
  }

  /**
   * Runs the job; the promise settles once it has its place: in line (with
   * its queue_position), running, or finished; or with the refusal of a
   * submission that never had one. With the local limiter that is within the
   * same turn; with Redis, one round trip.
   */
  private start(job: JobRecord, { submitted = false } = {}): { place: Promise<GatewayError | undefined>; running: Promise<void> } {
    const cancel = new AbortController();
    this.cancels.set(job.id, cancel);
    const { promise: place, resolve: settle } = Promise.withResolvers<GatewayError | undefined>();
    const running = this.run(job, cancel.signal, submitted ? settle : undefined)
      .catch(async (error: unknown) => {
        // The runner itself failed (its store, say): the job ends as the error table's internal error, if it still can.
        const failure = jobError(fail.internal(error));
        // The store gone too: a restart finds the job where it was.
        await this.finish(job.id, { status: "failed", error: failure }, errorEvent(failure), error).catch(() => undefined);
      })
      .finally(() => {
        this.cancels.delete(job.id);
        settle(undefined);
      });
    return { place, running };
  }

  /**
   * Tries the job until it ends. What the gateway or the GPU server refuses
   * before the generation starts (a 503, a connection refused, no slot for
   * now) is tried again after a pause (the server's Retry-After, else growing
   * from a second), until QUEUE_TIMEOUT after submission; a generation the
   * server accepted is never sent again. A drain leaves a job that has not
   * started queued, for the next process to run. `refuse` is the submitter's,
   * told of a refusal before the job ever had a place.
   */
  private async run(job: JobRecord, canceled: AbortSignal, refuse: ((refusal?: GatewayError) => void) | undefined): Promise<void> {
    const deadline = Date.parse(job.created_at) + this.gateway.config.queueTimeoutMs;
    const place = () => {
      refuse?.();
      refuse = undefined;
    };
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.attempt(job, canceled, deadline, place);
      if (outcome.kind === "done" || canceled.aborted) return;
      const error = outcome.error;
      if (ERRORS[error.code].upstream) this.gateway.metrics.upstreamErrors.inc({ route: JOBS_ROUTE, kind: error.code });
      if (refuse) {
        refuse(error);
        return;
      }
      if (error.code === "shutting_down" && !outcome.started) return; // stays queued: the next process runs it
      const waitMs = retryDelayMs(error, attempt);
      // A store unreachable after the send is never a reason to send again.
      if (!retried(error) || (outcome.started && error.code === "store_unavailable") || Date.now() + waitMs >= deadline) {
        await this.finish(job.id, { status: "failed", error: jobError(error) }, errorEvent(jobError(error)), error.cause);
        return;
      }
      if (outcome.started) await this.store.update(job.id, { status: "queued", started_at: null });
      await this.log.emit(job.id, { type: "retrying", kind: error.code, message: jobError(error).detail, retry_in_ms: waitMs });
      await sleep(waitMs, undefined, { signal: canceled }).catch(() => undefined);
    }
  }

  /**
   * One try: waits for a slot (until `deadline`), follows the GPU server's
   * stream and keeps what it sends. Settles "done" once the job has ended
   * here, else with the error and whether the call reached the GPU server.
   */
  private async attempt(job: JobRecord, canceled: AbortSignal, deadline: number, placed: () => void): Promise<{ kind: "done" } | { kind: "failed"; error: GatewayError; started: boolean }> {
    // The wait for a slot ends at the job's deadline; a generation once sent has REQUEST_TIMEOUT of its own.
    const waiting = new AbortController();
    const timer = setTimeout(() => {
      waiting.abort(fail.queueTimeout(this.gateway.config.queueTimeoutMs));
    }, Math.max(0, deadline - Date.now()));
    let started = false;
    const observer: GenerationObserver = {
      generating: () => undefined,
      begin: (phase) => {
        if (phase === "upstream") {
          clearTimeout(timer);
          started = true;
          placed();
          this.gateway.metrics.jobQueueWait.observe((Date.now() - Date.parse(job.created_at)) / 1000);
        }
        return () => undefined;
      },
      // Running is kept before the send: a gateway lost after it leaves a job that fails as lost, never one sent again.
      sending: async () => {
        if (!(await this.store.update(job.id, { status: "running", started_at: new Date().toISOString() }))) throw fail.clientClosed("the job was canceled");
      },
      upstreamContext: () => ({ requestId: job.id }),
      failedWith: () => undefined,
    };
    let generation: Generation | undefined;
    try {
      generation = new Generation(this.gateway, AbortSignal.any([canceled, waiting.signal]), observer);
      // The input is what the job was created with: the seed's digits kept, read back as JsonNumbers.
      await generation.accept(() => Promise.resolve(parseJsonObject(Buffer.from(job.input))));
      const events = await generation.events((position) => {
        void this.log.emit(job.id, { type: "queued", queue_position: position, position }).catch(() => undefined);
        placed();
      });
      for await (const event of events) {
        if (event.data === undefined) continue;
        if (event.type === "complete") {
          const output = await this.keepImage(answerImage(event.data));
          await this.finish(job.id, { status: "succeeded", output }, { type: "complete", output });
        } else if (event.type === "error") {
          const { message } = JSON.parse(event.data.toString("utf8")) as { message?: unknown };
          const failure = { kind: "upstream_status", detail: typeof message === "string" ? message : "" };
          await this.finish(job.id, { status: "failed", error: failure }, errorEvent(failure));
        } else {
          await this.log.emit(job.id, event.data.toString("utf8"));
        }
      }
      return { kind: "done" };
    } catch (error) {
      const known = asGatewayError(error);
      if (known.code === "client_closed") return { kind: "done" }; // canceled: cancel() has ended it
      return { kind: "failed", error: known, started };
    } finally {
      clearTimeout(timer);
      generation?.close();
    }
  }

  /**
   * Keeps the image within DATA_MAX_BYTES, the oldest finished jobs' going to
   * make room; a full disk or an image larger than the cap fails the job with
   * `storage_full`, and a full disk stops new jobs until space comes back.
   */
  private async keepImage(image: AnswerImage): Promise<StoredOutput> {
    const { dataMaxBytes } = this.gateway.config;
    if (image.bytes.length > dataMaxBytes) throw fail.storageFull(`an image of ${image.bytes.length} bytes is larger than DATA_MAX_BYTES (${dataMaxBytes})`);
    while ((await stored(() => this.store.trim(dataMaxBytes - image.bytes.length, SWEEP_BATCH), this.closing.signal)) === SWEEP_BATCH) await setImmediate();
    const kept = await stored(() => this.store.putImage(image.bytes, image.contentType, image.sha256), this.closing.signal).catch((error: unknown) => {
      throw this.space.failed(error);
    });
    const number = (value: unknown) => (typeof value === "number" ? value : null);
    const { width, height, generation_time_ms, image_id } = image.fields;
    return {
      ...kept,
      width: number(width),
      height: number(height),
      seed: image.seed ?? null,
      generation_time_ms: number(generation_time_ms),
      image_id: typeof image_id === "string" ? image_id : null,
    };
  }

  /** Ends the job (once: a later end, a late upstream event after a cancel say, is dropped) with its terminal event and its log line. */
  private async finish(id: string, change: JobChange, event: Record<string, unknown>, cause?: unknown): Promise<void> {
    if (!(await stored(() => this.store.update(id, { ...change, completed_at: new Date().toISOString() }), this.closing.signal))) return;
    await this.log.emit(id, event, { end: true });
    const job = await this.store.get(id);
    if (job) this.logEnd(job, cause);
  }

  /**
   * One line per job, when it ends, as a request has one: who, how it ended,
   * how long it waited and ran, what it kept; an internal failure's cause.
   */
  private logEnd(job: JobRecord, cause: unknown): void {
    const { logger } = this.gateway;
    const kind = job.error?.kind;
    const level = kind === "internal" ? "error" : job.status === "failed" ? "warn" : "info";
    if (!logger.isLevelEnabled(level)) return;
    const between = (from: string | null, to: string | null) => (from === null || to === null ? undefined : Date.parse(to) - Date.parse(from));
    const [queue_wait_ms, generation_ms] = [between(job.created_at, job.started_at), between(job.started_at, job.completed_at)];
    const fields = { job_id: job.id, owner: job.owner, status: job.status, error_kind: kind, queue_wait_ms, generation_ms, bytes: job.output?.bytes };
    logger[level]({ ...fields, err: kind === "internal" ? cause : undefined }, "job");
  }
}

/** A refusal before the generation started (lib/errors.ts), or the GPU server's own 503 (its queue full, CUDA not there yet). */
function retried(error: GatewayError): boolean {
  return ERRORS[error.code].retried === true || (error.code === "upstream_status" && error.status === 503);
}

/** The refusal's Retry-After, else a pause doubling from a second, at most 30 s. */
function retryDelayMs(error: GatewayError, attempt: number): number {
  const seconds = Number(error.headers["Retry-After"]);
  const asked = Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : 1000 * 2 ** (attempt - 1);
  return Math.min(asked, 30_000);
}

/** A job's last event when it fails: as /api/generate-stream's own error events, its kind and message. */
function errorEvent(failure: JobError): Record<string, unknown> {
  return { type: "error", kind: failure.kind, message: failure.detail };
}

/** A failure as a job keeps it: the error table's kind and its detail as text. */
function jobError(error: GatewayError): JobError {
  return { kind: error.code, detail: typeof error.detail === "string" ? error.detail : JSON.stringify(error.detail) };
}
