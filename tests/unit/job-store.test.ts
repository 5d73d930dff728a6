/** The embedded job store on a real SQLite file and real image files, reopened as a restart would. */
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DataDirInUse, SqliteJobStore, inputHash } from "@/lib/jobs/store";

let dir: string;
let store: SqliteJobStore;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "jobs-"));
  store = new SqliteJobStore(dir);
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const INPUT = '{"prompt":"a fox","negative_prompt":"","height":256,"width":256,"num_inference_steps":6,"guidance_scale":0,"seed":12345678901234567890}';

describe("the SQLite job store", () => {
  it("creates queued jobs with unguessable ids, and gives back the same job for a repeated idempotency key", () => {
    const { job, created } = store.create("key:a", INPUT, "order-1");
    expect(created).toBe(true);
    expect(job).toMatchObject({ owner: "key:a", status: "queued", input: INPUT, input_hash: inputHash(INPUT), started_at: null, output: null });
    expect(Buffer.from(job.id, "base64url")).toHaveLength(16);
    const again = store.create("key:a", '{"prompt":"another"}', "order-1");
    expect(again).toEqual({ job: store.get(job.id), created: false });
    // Keys are the caller's own: another owner's same key is another job.
    expect(store.create("key:b", INPUT, "order-1").created).toBe(true);
    expect(store.create("key:a", INPUT).job.id).not.toBe(job.id);
  });

  it("moves a job on until it finishes, and never after", () => {
    const { job } = store.create("ip:1", INPUT);
    expect(store.update(job.id, { status: "running", started_at: "2026-12-02T00:00:01.000Z" })).toBe(true);
    const output = { sha256: "ab".repeat(32), content_type: "image/jpeg", bytes: 3, width: 256, height: 256, seed: "12345678901234567890", generation_time_ms: 12, image_id: null };
    expect(store.update(job.id, { status: "succeeded", completed_at: "2026-12-02T00:00:02.000Z", output })).toBe(true);
    expect(store.update(job.id, { status: "canceled" })).toBe(false);
    expect(store.get(job.id)).toMatchObject({ status: "succeeded", output, error: null });
  });

  it("keeps each job's events in order, from any point", () => {
    const { job } = store.create("ip:1", INPUT);
    const other = store.create("ip:1", INPUT).job;
    for (const step of [1, 2, 3]) store.append(job.id, JSON.stringify({ type: "progress", step }));
    store.append(other.id, '{"type":"queued"}');
    expect(store.events(job.id, 0).map((event) => event.seq)).toEqual([1, 2, 3]);
    expect(store.events(job.id, 2)).toEqual([{ seq: 3, data: '{"type":"progress","step":3}' }]);
    expect(store.events(other.id, 0)).toEqual([{ seq: 1, data: '{"type":"queued"}' }]);
  });

  it("lists an owner's jobs newest first, page by page, and nobody else's", () => {
    const ids = Array.from({ length: 5 }, () => store.create("key:a", INPUT).job.id);
    store.create("key:b", INPUT);
    const first = store.list("key:a", 3);
    expect(first.map((job) => job.id)).toEqual(ids.slice(2).reverse());
    expect(store.list("key:a", 3, first.at(-1)?.id).map((job) => job.id)).toEqual(ids.slice(0, 2).reverse());
    // Another owner's job is no cursor here: nothing is older than what is unknown.
    expect(store.list("key:a", 10, store.list("key:b", 1)[0]?.id)).toEqual([]);
  });

  it("keeps one file per distinct image, written whole", () => {
    const bytes = Buffer.from("not really a jpeg");
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const stored = store.putImage(bytes, "image/jpeg");
    expect(stored).toMatchObject({ sha256, content_type: "image/jpeg", bytes: bytes.length });
    expect(store.putImage(bytes, "image/jpeg").file).toBe(stored.file);
    expect(readFileSync(stored.file).equals(bytes)).toBe(true);
    expect(readdirSync(path.join(dir, "images"))).toEqual([sha256]);
    expect(store.image(sha256)).toEqual(stored);
    expect(store.image("../jobs.db")).toBeUndefined();
  });

  it("is one process's: a second store on its DATA_DIR is refused, naming it and the holder, until the first closes", () => {
    expect(() => new SqliteJobStore(dir)).toThrow(DataDirInUse);
    expect(() => new SqliteJobStore(dir)).toThrow(`DATA_DIR=${dir} is in use by another gateway process (pid ${process.pid}): give each process its own DATA_DIR`);
    store.create("ip:1", INPUT);
    store.close();
    store = new SqliteJobStore(dir);
    expect(store.list("ip:1", 10)).toHaveLength(1);
  });

  it("after a restart, queues again what was queued and fails what was running, never running it twice", () => {
    const queued = store.create("ip:1", INPUT).job;
    const running = store.create("ip:1", INPUT).job;
    store.update(running.id, { status: "running", started_at: new Date().toISOString() });
    store.close();
    store = new SqliteJobStore(dir);
    const now = new Date("2026-12-02T01:00:00.000Z");
    const { requeued, failed } = store.recover(now);
    expect(requeued.map((job) => job.id)).toEqual([queued.id]);
    expect(failed.map((job) => [job.id, job.status, job.error?.kind, job.completed_at])).toEqual([[running.id, "failed", "gateway_restarted", now.toISOString()]]);
  });

  it("keeps the images within a size, deleting the oldest jobs first, and says what they take", () => {
    const output = (sha256: string, bytes: number) => ({ sha256, content_type: "image/png", bytes, width: null, height: null, seed: null, generation_time_ms: null, image_id: null });
    const jobs = [100, 200, 300].map((size) => {
      const job = store.create("ip:1", INPUT).job;
      const image = store.putImage(Buffer.alloc(size, size % 251), "image/png");
      store.update(job.id, { status: "succeeded", completed_at: new Date().toISOString(), output: output(image.sha256, size) });
      return job;
    });
    expect(store.usage()).toEqual({ images: 3, bytes: 600 });
    expect(store.counts()).toEqual({ queued: 0, running: 0, succeeded: 3, failed: 0, canceled: 0 });
    expect(store.trim(550)).toBe(1);
    expect(store.get(jobs[0]?.id ?? "")).toBeUndefined();
    expect(store.usage()).toEqual({ images: 2, bytes: 500 });
    expect(store.trim(500)).toBe(0);
    expect(store.trim(0)).toBe(2);
    expect(store.usage()).toEqual({ images: 0, bytes: 0 });
  });

  it("expires finished jobs, their events and the images no other job uses", () => {
    const kept = store.create("ip:1", INPUT).job;
    const gone = store.create("ip:1", INPUT).job;
    const shared = store.putImage(Buffer.from("shared"), "image/png");
    const own = store.putImage(Buffer.from("own"), "image/png");
    const output = (sha256: string) => ({ sha256, content_type: "image/png", bytes: 1, width: null, height: null, seed: null, generation_time_ms: null, image_id: null });
    store.update(kept.id, { status: "succeeded", completed_at: "2026-12-02T00:00:00.000Z", output: output(shared.sha256) });
    const third = store.create("ip:1", INPUT).job;
    store.update(third.id, { status: "succeeded", completed_at: "2026-12-01T00:00:00.000Z", output: output(shared.sha256) });
    store.update(gone.id, { status: "succeeded", completed_at: "2026-12-01T00:00:00.000Z", output: output(own.sha256) });
    store.append(gone.id, "{}");
    expect(store.expire(new Date("2026-12-01T12:00:00.000Z"))).toBe(2);
    expect(store.get(gone.id)).toBeUndefined();
    expect(store.events(gone.id, 0)).toEqual([]);
    expect(store.image(own.sha256)).toBeUndefined();
    expect(existsSync(own.file)).toBe(false);
    expect(store.image(shared.sha256)).toBeDefined();
    expect(store.get(kept.id)?.status).toBe("succeeded");
  });
});
