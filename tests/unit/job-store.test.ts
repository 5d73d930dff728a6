/** The embedded job store on a real SQLite file and real image files, reopened as a restart would. */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DataDirInUse, SqliteJobStore } from "@/lib/jobs/store";
import { inputHash } from "@/lib/jobs/types";

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
  it("creates queued jobs with unguessable ids, and gives back the same job for a repeated idempotency key", async () => {
    const { job, created } = await store.create("key:a", INPUT, "order-1");
    expect(created).toBe(true);
    expect(job).toMatchObject({ owner: "key:a", status: "queued", input: INPUT, input_hash: inputHash(INPUT), started_at: null, output: null });
    expect(Buffer.from(job.id, "base64url")).toHaveLength(16);
    const again = await store.create("key:a", '{"prompt":"another"}', "order-1");
    expect(again).toEqual({ job: await store.get(job.id), created: false });
    // Keys are the caller's own: another owner's same key is another job.
    expect((await store.create("key:b", INPUT, "order-1")).created).toBe(true);
    expect((await store.create("key:a", INPUT)).job.id).not.toBe(job.id);
  });

  it("moves a job on until it finishes, and never after", async () => {
    const { job } = await store.create("ip:1", INPUT);
    expect(await store.update(job.id, { status: "running", started_at: "2026-12-02T00:00:01.000Z" })).toBe(true);
    const output = { sha256: "ab".repeat(32), content_type: "image/jpeg", bytes: 3, width: 256, height: 256, seed: "12345678901234567890", generation_time_ms: 12, image_id: null };
    expect(await store.update(job.id, { status: "succeeded", completed_at: "2026-12-02T00:00:02.000Z", output })).toBe(true);
    expect(await store.update(job.id, { status: "canceled" })).toBe(false);
    expect(await store.get(job.id)).toMatchObject({ status: "succeeded", output, error: null });
  });

  it("keeps each job's events in order, from any point", async () => {
    const { job } = await store.create("ip:1", INPUT);
    const other = (await store.create("ip:1", INPUT)).job;
    for (const step of [1, 2, 3]) await store.append(job.id, JSON.stringify({ type: "progress", step }));
    await store.append(other.id, '{"type":"queued"}');
    expect((await store.events(job.id, 0)).map((event) => event.seq)).toEqual([1, 2, 3]);
    expect(await store.events(job.id, 2)).toEqual([{ seq: 3, data: '{"type":"progress","step":3}' }]);
    expect(await store.events(other.id, 0)).toEqual([{ seq: 1, data: '{"type":"queued"}' }]);
  });

  it("lists an owner's jobs newest first, page by page, and nobody else's", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await store.create("key:a", INPUT)).job.id);
    await store.create("key:b", INPUT);
    const first = await store.list("key:a", 3);
    expect(first.map((job) => job.id)).toEqual(ids.slice(2).reverse());
    expect((await store.list("key:a", 3, first.at(-1)?.id)).map((job) => job.id)).toEqual(ids.slice(0, 2).reverse());
    // Another owner's job is no cursor here: nothing is older than what is unknown.
    expect(await store.list("key:a", 10, (await store.list("key:b", 1))[0]?.id)).toEqual([]);
  });

  it("keeps one file per distinct image, written whole, and no partial file after a failed write", async () => {
    const bytes = Buffer.from("not really a jpeg");
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const stored = await store.putImage(bytes, "image/jpeg", sha256);
    expect(stored).toMatchObject({ sha256, content_type: "image/jpeg", bytes: bytes.length });
    expect(await store.putImage(bytes, "image/jpeg", sha256)).toEqual(stored);
    expect(readFileSync(path.join(dir, "images", sha256)).equals(bytes)).toBe(true);
    expect(Buffer.from(await new Response(store.images.read(sha256, 4, 9)).arrayBuffer()).toString()).toBe("really");
    expect(readdirSync(path.join(dir, "images"))).toEqual([sha256]);
    expect(await store.image(sha256)).toEqual(stored);
    expect(await store.image("../jobs.db")).toBeUndefined();
    expect(await store.usage()).toEqual({ images: 1, bytes: bytes.length });
    // A write that fails (here: a directory in the file's place) rejects with the system's error and leaves nothing behind.
    const other = "f".repeat(64);
    mkdirSync(path.join(dir, "images", other));
    await expect(store.putImage(Buffer.from("x"), "image/png", other)).rejects.toMatchObject({ code: expect.stringMatching(/^E/) as unknown });
    expect(readdirSync(path.join(dir, "images")).filter((name) => name.endsWith(".partial"))).toEqual([]);
    expect(await store.image(other)).toBeUndefined();
  });

  it("is one process's: a second store on its DATA_DIR is refused, naming it and the holder, until the first closes", async () => {
    expect(() => new SqliteJobStore(dir)).toThrow(DataDirInUse);
    expect(() => new SqliteJobStore(dir)).toThrow(`DATA_DIR=${dir} is in use by another gateway process (pid ${process.pid}): give each process its own DATA_DIR`);
    await store.create("ip:1", INPUT);
    store.close();
    store = new SqliteJobStore(dir);
    expect(await store.list("ip:1", 10)).toHaveLength(1);
  });

  it("after a restart, queues again what was queued and fails what was running, never running it twice", async () => {
    const queued = (await store.create("ip:1", INPUT)).job;
    const running = (await store.create("ip:1", INPUT)).job;
    await store.update(running.id, { status: "running", started_at: new Date().toISOString() });
    store.close();
    store = new SqliteJobStore(dir);
    const now = new Date("2026-12-02T01:00:00.000Z");
    const { requeued, failed } = await store.recover(now);
    expect(requeued.map((job) => job.id)).toEqual([queued.id]);
    expect(failed.map((job) => [job.id, job.status, job.error?.kind, job.completed_at])).toEqual([[running.id, "failed", "gateway_restarted", now.toISOString()]]);
  });

  it("keeps the images within a size, deleting the oldest jobs first, a batch at a time, and says what they take", async () => {
    const output = (sha256: string, bytes: number) => ({ sha256, content_type: "image/png", bytes, width: null, height: null, seed: null, generation_time_ms: null, image_id: null });
    const jobs = [];
    for (const size of [100, 200, 300]) {
      const job = (await store.create("ip:1", INPUT)).job;
      const bytes = Buffer.alloc(size, size % 251);
      const image = await store.putImage(bytes, "image/png", createHash("sha256").update(bytes).digest("hex"));
      await store.update(job.id, { status: "succeeded", completed_at: new Date().toISOString(), output: output(image.sha256, size) });
      jobs.push(job);
    }
    expect(await store.usage()).toEqual({ images: 3, bytes: 600 });
    expect(await store.counts()).toEqual({ queued: 0, running: 0, succeeded: 3, failed: 0, canceled: 0 });
    expect(await store.trim(550, 10)).toBe(1);
    expect(await store.get(jobs[0]?.id ?? "")).toBeUndefined();
    expect(await store.usage()).toEqual({ images: 2, bytes: 500 });
    expect(await store.trim(500, 10)).toBe(0);
    expect(await store.trim(0, 1)).toBe(1);
    expect(await store.trim(0, 10)).toBe(1);
    expect(await store.usage()).toEqual({ images: 0, bytes: 0 });
    // The counts at open are the kept ones, summed once.
    store.close();
    store = new SqliteJobStore(dir);
    expect([await store.usage(), await store.size()]).toEqual([{ images: 0, bytes: 0 }, 0]);
  });

  it("expires finished jobs, a batch at a time, with their events and the images no other job uses", async () => {
    const image = async (text: string) => {
      const bytes = Buffer.from(text);
      return store.putImage(bytes, "image/png", createHash("sha256").update(bytes).digest("hex"));
    };
    const kept = (await store.create("ip:1", INPUT)).job;
    const gone = (await store.create("ip:1", INPUT)).job;
    const shared = await image("shared");
    const own = await image("own");
    const output = (sha256: string) => ({ sha256, content_type: "image/png", bytes: 1, width: null, height: null, seed: null, generation_time_ms: null, image_id: null });
    await store.update(kept.id, { status: "succeeded", completed_at: "2026-12-02T00:00:00.000Z", output: output(shared.sha256) });
    const third = (await store.create("ip:1", INPUT)).job;
    await store.update(third.id, { status: "succeeded", completed_at: "2026-12-01T00:00:00.000Z", output: output(shared.sha256) });
    await store.update(gone.id, { status: "succeeded", completed_at: "2026-12-01T00:00:00.000Z", output: output(own.sha256) });
    await store.append(gone.id, "{}");
    const before = new Date("2026-12-01T12:00:00.000Z");
    expect(await store.expire(before, 1)).toBe(1);
    expect(await store.expire(before, 10)).toBe(1);
    expect(await store.expire(before, 10)).toBe(0);
    expect(await store.get(gone.id)).toBeUndefined();
    expect(await store.events(gone.id, 0)).toEqual([]);
    expect(await store.image(own.sha256)).toBeUndefined();
    await expect.poll(() => existsSync(path.join(dir, "images", own.sha256))).toBe(false);
    expect(await store.image(shared.sha256)).toBeDefined();
    expect((await store.get(kept.id))?.status).toBe("succeeded");
    expect(await store.size()).toBe(1);
  });

  it("keeps at most a number of jobs, the oldest finished going first, never one still to run", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await store.create("ip:1", INPUT)).job.id);
    for (const id of ids.slice(1, 4)) await store.update(id, { status: "failed", completed_at: new Date().toISOString() });
    expect(await store.thin(3, 1)).toBe(1);
    expect(await store.get(ids[1] ?? "")).toBeUndefined();
    expect(await store.thin(1, 10)).toBe(2);
    expect(await store.size()).toBe(2);
    expect(await store.thin(1, 10)).toBe(0);
    expect((await store.list("ip:1", 10)).map((job) => job.id)).toEqual([ids[4], ids[0]]);
  });

  it("keeps no more events for a job than asked, but what is appended without a limit", async () => {
    const { job } = await store.create("ip:1", INPUT);
    for (let i = 0; i < 5; i++) await store.append(job.id, `{"n":${i}}`, 3);
    expect((await store.events(job.id, 0)).map((event) => event.seq)).toEqual([1, 2, 3]);
    expect((await store.append(job.id, '{"type":"complete"}'))?.seq).toBe(4);
  });
});
