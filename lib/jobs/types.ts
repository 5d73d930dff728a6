/**
 * Where jobs live: their records, their events (for a stream resumed with
 * Last-Event-ID) and their images (lib/jobs/images.ts). `JobStore` is what
 * the routes and the runner use, whichever store it is: `SqliteJobStore`
 * (store.ts), the embedded one, or `RedisJobStore` (redis-store.ts), shared
 * by every gateway on one Redis.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Job as JobView, JobOutput as OutputView } from "../api-shapes";
import type { ImageStore } from "./images";

export type JobStatus = JobView["status"];
export const FINISHED: ReadonlySet<JobStatus> = new Set(["succeeded", "failed", "canceled"]);

/** A job's image as kept: the answer's output (lib/api-shapes.ts) but its URL, which the doors make. */
export type StoredOutput = Omit<OutputView, "image_url">;

/** Why a job failed: the error table's kind and detail, as the answer says it. */
export type JobError = NonNullable<JobView["error"]>;

/** A job as a store keeps it; lib/api-shapes.ts's Job is how the doors show it. */
export interface JobRecord {
  id: string;
  /** Whose job it is: an API key's id, or the client address without keys. */
  owner: string;
  status: JobStatus;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  /** The request as sent upstream (lib/schemas.ts requestJson): the seed as its digits. */
  input: string;
  output: StoredOutput | null;
  error: JobError | null;
  idempotency_key: string | null;
  /** SHA-256 of the normalised input: a replayed Idempotency-Key must come with the same one. */
  input_hash: string;
}

/** One event of a job's log, as kept (the doors send it as it is, its seq the SSE `id:`). */
export interface JobLogEntry {
  /** 1, 2, ...: the SSE `id:` of the event, per job (0 for a live one). */
  seq: number;
  /** Told to listeners only, not kept: a later place in line. */
  live?: boolean;
  /** The event's JSON, as sent in its `data:` line. */
  data: string;
}

/** What a job may change once made. */
export type JobChange = Partial<Pick<JobRecord, "status" | "started_at" | "completed_at" | "output" | "error">>;

/** An image's record, as its job's output names it. */
export type StoredImage = Pick<StoredOutput, "sha256" | "content_type" | "bytes">;

/** Hears a job's event, with the job as it is then. */
export type Listener = (event: JobLogEntry, job: JobRecord) => void;

/**
 * What a store that every gateway shares adds: events and cancels reach every
 * gateway through it, and each gateway in turn takes up what a lost one left.
 */
export interface SharedJobs {
  /** Hears the job's events, whichever gateway appends them, told to the `onEvent` handler, until `unwatch`. */
  watch(id: string): void;
  unwatch(id: string): void;
  onEvent(handler: (id: string, event: JobLogEntry) => void): void;
  /** Tells the job's listeners an event that is not kept (a later place in line). */
  tell(id: string, data: string): Promise<void>;
  /** Records a queued job's place in line now, for a gateway asked about it that is not the one running it. */
  setPlace(id: string, position: number): Promise<void>;
  placeOf(id: string): Promise<number | undefined>;
  /** Tells every gateway that the job was canceled: the one running it stops. */
  announceCancel(id: string): Promise<void>;
  onCancel(handler: (id: string) => void): void;
  /** Whether the shared store answers now (its Redis reachable). */
  readonly reachable: boolean;
  /** How often `recover` is run again, to take up what a gateway that stopped answering left. */
  readonly recoverEveryMs: number;
}

export interface JobStore {
  /** Set for a store every gateway shares (Redis); the embedded one has none. */
  readonly shared?: SharedJobs;
  /** Where the images' bytes are, read from as the consumer pulls; their records are the job store's. */
  readonly images: ImageStore;
  /** A new queued job; with an idempotency key already used by `owner`, that job instead (`created` false). */
  create(owner: string, input: string, idempotencyKey?: string): Promise<{ job: JobRecord; created: boolean }>;
  get(id: string): Promise<JobRecord | undefined>;
  find(owner: string, idempotencyKey: string): Promise<JobRecord | undefined>;
  /** `owner`'s jobs, newest first, older than `before` when given. */
  list(owner: string, limit: number, before?: string): Promise<JobRecord[]>;
  /** Deletes a job and its events, and its image when no other job has it. */
  remove(id: string): Promise<void>;
  /** Moves a job on; refused (false) once it has finished, so a late update never overwrites an end. */
  update(id: string, change: JobChange): Promise<boolean>;
  /** Appends an event and returns it with its seq; with `limit`, one past that many events is not kept (undefined). */
  append(id: string, data: string, limit?: number): Promise<JobLogEntry | undefined>;
  /** The job's events after `afterSeq` (0: all). */
  events(id: string, afterSeq: number): Promise<JobLogEntry[]>;
  /** Keeps an image once under its SHA-256 (the caller's, computed once), whole or not at all, as ImageStore.put does. */
  putImage(bytes: Buffer, contentType: string, sha256: string): Promise<StoredImage>;
  /** The image's record; its bytes are read only when they are sent. */
  image(sha256: string): Promise<StoredImage | undefined>;
  ownsImage(owner: string, sha256: string): Promise<boolean>;
  /**
   * What a previous process left (the embedded store, at start), or a gateway
   * that stopped answering (a shared store, at start and every
   * `recoverEveryMs`). A queued job never reached a GPU and is queued again,
   * here; a running one may have, and is never replayed: it fails with
   * `gateway_restarted` (or `gateway_lost`).
   */
  recover(now: Date): Promise<{ requeued: JobRecord[]; failed: JobRecord[] }>;
  /** Deletes at most `batch` of the jobs finished before `before` (with their events, and their images no other job has); how many went. */
  expire(before: Date, batch: number): Promise<number>;
  /** Deletes at most `batch` of the oldest finished jobs with images, while the images take more than `maxBytes`; how many went. */
  trim(maxBytes: number, batch: number): Promise<number>;
  /** Deletes at most `batch` of the oldest finished jobs, while more than `maxJobs` are kept; how many went. */
  thin(maxJobs: number, batch: number): Promise<number>;
  /** The images kept, and their bytes (counted as they come and go, not summed). */
  usage(): Promise<{ images: number; bytes: number }>;
  size(): Promise<number>;
  counts(): Promise<Record<JobStatus, number>>;
  /** Throws unless images and records can be written. */
  checkWritable(): Promise<void>;
  close(): void;
}

export function inputHash(input: string): string {
  return createHash("sha256").update(input).digest("hex");
}

/** A new queued job, as either store makes it; its id one no one guesses (128 random bits, base64url). */
export function newJob(owner: string, input: string, idempotencyKey: string | undefined): JobRecord {
  return {
    id: randomBytes(16).toString("base64url"),
    owner,
    status: "queued",
    created_at: new Date().toISOString(),
    started_at: null,
    completed_at: null,
    input,
    input_hash: inputHash(input),
    output: null,
    error: null,
    idempotency_key: idempotencyKey ?? null,
  };
}

/** A job as either store keeps it in text (a SQLite row, a Redis hash): output and error as JSON, none as NULL (or "", in a hash). */
export function jobFromText(row: Partial<Record<string, string | null>>): JobRecord {
  const text = (name: string) => row[name] || null;
  return {
    id: row.id ?? "",
    owner: row.owner ?? "",
    status: (row.status ?? "queued") as JobStatus,
    created_at: row.created_at ?? "",
    started_at: text("started_at"),
    completed_at: text("completed_at"),
    input: row.input ?? "{}",
    input_hash: row.input_hash ?? "",
    output: row.output ? (JSON.parse(row.output) as StoredOutput) : null,
    error: row.error ? (JSON.parse(row.error) as JobError) : null,
    idempotency_key: text("idempotency_key"),
  };
}
