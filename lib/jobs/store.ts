/**
 * The embedded job store (`JobStore`, lib/jobs/types.ts): a SQLite database,
 * `<dataDir>/jobs.db`, so a job survives `kill -9` and a restart with no
 * service to run; the images in their store (`<dataDir>/images/<sha256>` by
 * default, or a bucket).
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { SQLInputValue } from "node:sqlite";
import { FileImageStore, checkWritable } from "./images";
import type { ImageStore } from "./images";
import { jobFromText, newJob } from "./types";
import type { JobRecord, JobChange, JobLogEntry, JobStatus, JobStore, StoredImage } from "./types";

const SCHEMA = `
  PRAGMA journal_mode = WAL;
  PRAGMA synchronous = NORMAL;
  CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    input TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    output TEXT,
    error TEXT,
    idempotency_key TEXT
  );
  CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_key ON jobs (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
  CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner);
  CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (completed_at) WHERE completed_at IS NOT NULL;
  CREATE TABLE IF NOT EXISTS events (job_id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job_id, seq));
  CREATE TABLE IF NOT EXISTS images (sha256 TEXT PRIMARY KEY, content_type TEXT NOT NULL, bytes INTEGER NOT NULL);
`;

const SQLITE_BUSY = 5;

/** ` (pid N)`, as the holder wrote it, when it can be read. */
function heldBy(pidFile: string): string {
  try {
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? ` (pid ${pid})` : "";
  } catch {
    return "";
  }
}

/** A second process on a DATA_DIR would take up the first one's jobs as its own leftovers: one process per DATA_DIR. */
export class DataDirInUse extends Error {
  override name = "DataDirInUse";
}

/**
 * It holds SQLite's exclusive lock on the database for its whole life (the
 * system's file lock: gone with the process, even after kill -9), so a
 * second process on the same DATA_DIR cannot open it.
 */
// node:sqlite answers at once; the methods are async as the JobStore interface is, for a store over the network.
/* eslint-disable @typescript-eslint/require-await */
export class SqliteJobStore implements JobStore {
  private readonly db: DatabaseSync;
  /** What is kept, counted as it changes (a SUM per written image made each write cost as much as the store). */
  private kept: { images: number; bytes: number; jobs: number };

  constructor(
    dataDir: string,
    readonly images: ImageStore = new FileImageStore(path.join(dataDir, "images")),
  ) {
    mkdirSync(dataDir, { recursive: true });
    this.db = new DatabaseSync(path.join(dataDir, "jobs.db"));
    const holder = path.join(dataDir, "gateway.pid");
    try {
      // Before the first access, so that WAL keeps its index in this process's memory, not in a file another could share.
      this.db.exec("PRAGMA locking_mode = EXCLUSIVE;");
      this.db.exec(SCHEMA);
      this.db.exec("BEGIN EXCLUSIVE; COMMIT;");
      this.migrate();
    } catch (error) {
      this.db.close();
      if ((error as { errcode?: unknown }).errcode !== SQLITE_BUSY) throw error;
      throw new DataDirInUse(`DATA_DIR=${dataDir} is in use by another gateway process${heldBy(holder)}: give each process its own DATA_DIR`);
    }
    writeFileSync(holder, `${process.pid}\n`);
    this.kept = this.db.prepare("SELECT COUNT(*) AS images, COALESCE(SUM(bytes), 0) AS bytes, (SELECT COUNT(*) FROM jobs) AS jobs FROM images").get() as typeof this.kept;
  }

  /** Which image a job has, in a column of its own: the lookups by image (is it still used?) are indexed, not JSON scans. */
  private migrate(): void {
    const columns = this.db.prepare("PRAGMA table_info(jobs)").all() as { name: string }[];
    if (!columns.some((column) => column.name === "image")) {
      this.db.exec("ALTER TABLE jobs ADD COLUMN image TEXT; UPDATE jobs SET image = json_extract(output, '$.sha256') WHERE output IS NOT NULL;");
    }
    this.db.exec("CREATE INDEX IF NOT EXISTS jobs_by_image ON jobs (image) WHERE image IS NOT NULL;");
  }

  async create(owner: string, input: string, idempotencyKey?: string): Promise<{ job: JobRecord; created: boolean }> {
    // Looked up and inserted in one turn of the event loop: two sends of one key never both insert.
    const known = idempotencyKey === undefined ? undefined : this.row("SELECT * FROM jobs WHERE owner = ? AND idempotency_key = ?", owner, idempotencyKey);
    if (known) return { job: known, created: false };
    const job = newJob(owner, input, idempotencyKey);
    this.db
      .prepare("INSERT INTO jobs (id, owner, status, created_at, input, input_hash, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?)")
      .run(job.id, owner, job.status, job.created_at, input, job.input_hash, job.idempotency_key);
    this.kept.jobs++;
    return { job, created: true };
  }

  async get(id: string): Promise<JobRecord | undefined> {
    return this.row("SELECT * FROM jobs WHERE id = ?", id);
  }

  async find(owner: string, idempotencyKey: string): Promise<JobRecord | undefined> {
    return this.row("SELECT * FROM jobs WHERE owner = ? AND idempotency_key = ?", owner, idempotencyKey);
  }

  async list(owner: string, limit: number, before?: string): Promise<JobRecord[]> {
    // rowid: the order of creation, which created_at (milliseconds) cannot break ties in.
    const older = "rowid < COALESCE((SELECT rowid FROM jobs WHERE id = ? AND owner = ?), -1)";
    return before === undefined
      ? this.rows("SELECT * FROM jobs WHERE owner = ? ORDER BY rowid DESC LIMIT ?", owner, limit)
      : this.rows(`SELECT * FROM jobs WHERE owner = ? AND ${older} ORDER BY rowid DESC LIMIT ?`, owner, before, owner, limit);
  }

  async update(id: string, change: JobChange): Promise<boolean> {
    const fields = Object.entries(change).map(([key, value]) => [key, value !== null && typeof value === "object" ? JSON.stringify(value) : value] as const);
    if (change.output) fields.push(["image", change.output.sha256]);
    if (fields.length === 0) return false;
    const sets = fields.map(([key]) => `${key} = ?`).join(", ");
    const result = this.db
      .prepare(`UPDATE jobs SET ${sets} WHERE id = ? AND status NOT IN ('succeeded', 'failed', 'canceled')`)
      .run(...fields.map(([, value]) => value ?? null), id);
    return Number(result.changes) > 0;
  }

  async append(id: string, data: string, limit?: number): Promise<JobLogEntry | undefined> {
    const row = this.db.prepare("SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM events WHERE job_id = ?").get(id) as { seq: number };
    if (limit !== undefined && row.seq > limit) return undefined;
    this.db.prepare("INSERT INTO events (job_id, seq, data) VALUES (?, ?, ?)").run(id, row.seq, data);
    return { seq: row.seq, data };
  }

  async events(id: string, afterSeq: number): Promise<JobLogEntry[]> {
    return this.db.prepare("SELECT seq, data FROM events WHERE job_id = ? AND seq > ? ORDER BY seq").all(id, afterSeq) as unknown as JobLogEntry[];
  }

  async putImage(bytes: Buffer, contentType: string, sha256: string): Promise<StoredImage> {
    if (!(await this.image(sha256))) {
      await this.images.put(sha256, bytes, contentType);
      const added = this.db.prepare("INSERT OR IGNORE INTO images (sha256, content_type, bytes) VALUES (?, ?, ?)").run(sha256, contentType, bytes.length);
      if (Number(added.changes) > 0) {
        this.kept.images++;
        this.kept.bytes += bytes.length;
      }
    }
    return { sha256, content_type: contentType, bytes: bytes.length };
  }

  async image(sha256: string): Promise<StoredImage | undefined> {
    return this.db.prepare("SELECT sha256, content_type, bytes FROM images WHERE sha256 = ?").get(sha256) as StoredImage | undefined;
  }

  async ownsImage(owner: string, sha256: string): Promise<boolean> {
    return this.db.prepare("SELECT 1 FROM jobs WHERE image = ? AND owner = ? LIMIT 1").get(sha256, owner) !== undefined;
  }

  async recover(now: Date): Promise<{ requeued: JobRecord[]; failed: JobRecord[] }> {
    const error = JSON.stringify({ kind: "gateway_restarted", detail: "The gateway restarted while the generation ran; it is not run again" });
    const failed = this.rows("UPDATE jobs SET status = 'failed', completed_at = ?, error = ? WHERE status = 'running' RETURNING *", now.toISOString(), error);
    return { requeued: this.rows("SELECT * FROM jobs WHERE status = 'queued' ORDER BY rowid"), failed };
  }

  async expire(before: Date, batch: number): Promise<number> {
    const gone = this.db.prepare("SELECT id FROM jobs WHERE completed_at IS NOT NULL AND completed_at < ? ORDER BY completed_at LIMIT ?").all(before.toISOString(), batch) as { id: string }[];
    for (const { id } of gone) this.removeNow(id);
    return gone.length;
  }

  async trim(maxBytes: number, batch: number): Promise<number> {
    let removed = 0;
    const oldest = this.db.prepare("SELECT id FROM jobs WHERE image IS NOT NULL AND completed_at IS NOT NULL ORDER BY rowid LIMIT ?");
    while (removed < batch && this.kept.bytes > maxBytes) {
      const rows = oldest.all(Math.min(16, batch - removed)) as { id: string }[];
      if (rows.length === 0) break;
      for (const { id } of rows) {
        if (this.kept.bytes <= maxBytes) break;
        this.removeNow(id);
        removed++;
      }
    }
    return removed;
  }

  async thin(maxJobs: number, batch: number): Promise<number> {
    const excess = Math.min(batch, this.kept.jobs - maxJobs);
    if (excess <= 0) return 0;
    const gone = this.db.prepare("SELECT id FROM jobs WHERE completed_at IS NOT NULL ORDER BY rowid LIMIT ?").all(excess) as { id: string }[];
    for (const { id } of gone) this.removeNow(id);
    return gone.length;
  }

  async usage(): Promise<{ images: number; bytes: number }> {
    return { images: this.kept.images, bytes: this.kept.bytes };
  }

  async size(): Promise<number> {
    return this.kept.jobs;
  }

  async counts(): Promise<Record<JobStatus, number>> {
    const counts: Record<JobStatus, number> = { queued: 0, running: 0, succeeded: 0, failed: 0, canceled: 0 };
    for (const { status, count } of this.db.prepare("SELECT status, COUNT(*) AS count FROM jobs GROUP BY status").all() as { status: JobStatus; count: number }[]) {
      counts[status] = count;
    }
    return counts;
  }

  async remove(id: string): Promise<void> {
    this.removeNow(id);
  }

  /** Synchronous, so a sweep's batch is removed whole, with nothing between its steps. */
  private removeNow(id: string): void {
    const job = this.db.prepare("DELETE FROM jobs WHERE id = ? RETURNING image").get(id) as { image: string | null } | undefined;
    if (!job) return;
    this.db.prepare("DELETE FROM events WHERE job_id = ?").run(id);
    this.kept.jobs--;
    // The image's record goes with its last job, at once; its file off the event loop (a reader holding it open still reads it whole).
    if (job.image === null || this.db.prepare("SELECT 1 FROM jobs WHERE image = ? LIMIT 1").get(job.image) !== undefined) return;
    const image = this.db.prepare("DELETE FROM images WHERE sha256 = ? RETURNING bytes").get(job.image) as { bytes: number } | undefined;
    if (!image) return;
    this.kept.images--;
    this.kept.bytes -= image.bytes;
    void this.images.remove(job.image).catch(() => undefined);
  }

  async checkWritable(): Promise<void> {
    await checkWritable(this.images);
    this.db.exec("BEGIN IMMEDIATE; ROLLBACK;");
  }

  close(): void {
    this.images.close?.();
    this.db.close();
  }

  private row(sql: string, ...params: SQLInputValue[]): JobRecord | undefined {
    const row = this.db.prepare(sql).get(...params) as Record<string, string | null> | undefined;
    return row && jobFromText(row);
  }

  private rows(sql: string, ...params: SQLInputValue[]): JobRecord[] {
    return (this.db.prepare(sql).all(...params) as Record<string, string | null>[]).map(jobFromText);
  }
}
/* eslint-enable @typescript-eslint/require-await */
