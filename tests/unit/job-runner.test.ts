/** Jobs run in-process: a real registry and emulator, a real SQLite store in a temporary directory. */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startEmulator } from "@/emulator/server";
import type { Emulator } from "@/emulator/server";
import { parseConfig } from "@/lib/config";
import { JobRunner } from "@/lib/jobs/runner";
import { SqliteJobStore } from "@/lib/jobs/store";
import type { JobRecord } from "@/lib/jobs/types";
import { Registry, setRegistry } from "@/lib/registry";
import { validateGenerateRequest } from "@/lib/schemas";
import type { GenerateRequest } from "@/lib/schemas";

let emulator: Emulator;
let gateway: Registry;
let dir: string;
let store: SqliteJobStore;
let current: JobRunner;

beforeAll(async () => {
  emulator = await startEmulator({ stepMs: 10, slots: 8 });
});
afterAll(async () => {
  await emulator.close();
});
afterEach(async () => {
  emulator.reset();
  emulator.setStepMs(10);
  current.close();
  await gateway.close(1000);
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The log lines of the runner made last, when it was made with `logged`. */
let lines: Record<string, unknown>[] = [];

function runner(env: Record<string, string> = {}, { logged = false } = {}): JobRunner {
  lines = [];
  const logTo = { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) };
  gateway = new Registry(parseConfig({ TEXT2IMAGE_SERVER_URL: emulator.url, LOG_LEVEL: logged ? "info" : "silent", ...env }), { logTo });
  setRegistry(gateway);
  dir = mkdtempSync(path.join(tmpdir(), "jobs-"));
  store = new SqliteJobStore(dir);
  current = new JobRunner(gateway, store);
  return current;
}

function request(fields: Record<string, unknown> = {}): GenerateRequest {
  const result = validateGenerateRequest({ prompt: "a lighthouse", width: 256, height: 256, num_inference_steps: 6, ...fields });
  if (!result.ok) throw new Error("invalid");
  return result.data;
}

/** Resolves with the job once it has finished. */
async function finished(jobs: JobRunner, id: string): Promise<JobRecord> {
  await expect.poll(async () => ["succeeded", "failed", "canceled"].includes((await jobs.store.get(id))?.status ?? ""), { timeout: 10_000 }).toBe(true);
  return (await jobs.store.get(id)) as JobRecord;
}

const types = async (jobs: JobRunner, id: string) => (await jobs.store.events(id, 0)).map((event) => (JSON.parse(event.data) as { type: string }).type);

describe("a job", () => {
  it("runs to its image, kept as a file byte for byte, its events kept in order", async () => {
    const jobs = runner();
    const heard: number[] = [];
    const { job, created } = await jobs.submit("ip:1", request({ seed: 42 }));
    jobs.log.listen(job.id, (event) => heard.push(event.seq));
    expect(created).toBe(true);
    const done = await finished(jobs, job.id);
    expect(done).toMatchObject({ status: "succeeded", error: null, output: { content_type: "image/jpeg", width: 256, height: 256, seed: "42" } });
    expect(done.started_at).not.toBeNull();
    const direct = (await (
      await fetch(`${emulator.url}/generate`, { method: "POST", body: JSON.stringify({ prompt: "a lighthouse", negative_prompt: "", width: 256, height: 256, num_inference_steps: 6, guidance_scale: 0, seed: 42 }), headers: { "content-type": "application/json" } })
    ).json()) as { image_base64: string };
    const file = path.join(dir, "images", done.output?.sha256 ?? "");
    expect(`data:image/jpeg;base64,${readFileSync(file).toString("base64")}`).toBe(direct.image_base64);
    const kept = await types(jobs, job.id);
    expect(kept).toContain("progress");
    expect(kept.at(-1)).toBe("complete");
    expect((await jobs.store.events(job.id, 0)).at(-1)?.data).not.toContain("base64");
    expect(heard.length).toBeGreaterThan(0);
    expect(heard).toEqual((await jobs.store.events(job.id, heard[0] ? heard[0] - 1 : 0)).map((event) => event.seq));
  });

  it("is created once for an idempotency key, however often it is sent", async () => {
    const jobs = runner();
    const [first, ...replays] = await Promise.all(Array.from({ length: 5 }, () => jobs.submit("key:a", request(), "order-7")));
    if (!first) throw new Error("no job");
    expect(first.created).toBe(true);
    expect(replays.every((replay) => !replay.created && replay.job.id === first.job.id)).toBe(true);
    await finished(jobs, first.job.id);
    expect(emulator.stats().generateRequests).toBe(1);
  });

  it("canceled while queued never reaches the GPU; canceled while running has its upstream call aborted", async () => {
    const jobs = runner({ MAX_CONCURRENT_REQUESTS: "1" });
    emulator.setStepMs(200);
    const running = (await jobs.submit("ip:1", request({ num_inference_steps: 12 }))).job;
    await expect.poll(() => emulator.stats().active).toBe(1);
    const queued = (await jobs.submit("ip:1", request())).job;
    await expect.poll(() => gateway.limiter.stats().queued).toBe(1);
    expect((await jobs.cancel(queued.id))?.status).toBe("canceled");
    await expect.poll(() => gateway.limiter.stats().queued).toBe(0);
    expect((await jobs.cancel(running.id))?.status).toBe("canceled");
    await expect.poll(() => emulator.stats().aborted, { timeout: 2000 }).toBe(1);
    expect(emulator.stats().generateRequests).toBe(1);
    expect((await types(jobs, queued.id)).at(-1)).toBe("canceled");
    // Canceling again, or a finished job, changes nothing.
    expect((await jobs.cancel(running.id))?.status).toBe("canceled");
    expect((await types(jobs, running.id)).filter((type) => type === "canceled")).toHaveLength(1);
  });

  it("fails with the error table's kind and detail when the GPU server fails", async () => {
    const jobs = runner();
    emulator.setFault({ kind: "status", status: 500, detail: "CUDA out of memory" });
    const done = await finished(jobs, (await jobs.submit("ip:1", request())).job.id);
    expect(done).toMatchObject({ status: "failed", error: { kind: "upstream_status", detail: "Text-to-image server error: CUDA out of memory" } });
  });

  it("left queued by a previous process runs at start; left running fails as gateway_restarted, never run twice", async () => {
    const jobs = runner();
    const queued = (await store.create("ip:1", '{"prompt":"left queued","width":256,"height":256,"num_inference_steps":6,"seed":12345678901234567890}')).job;
    const running = (await store.create("ip:1", '{"prompt":"left running","width":256,"height":256,"num_inference_steps":6}')).job;
    await store.update(running.id, { status: "running", started_at: new Date().toISOString() });
    await jobs.resume();
    expect((await finished(jobs, queued.id)).output?.seed).toBe("12345678901234567890");
    expect(await store.get(running.id)).toMatchObject({ status: "failed", error: { kind: "gateway_restarted" } });
    expect(emulator.stats().generateRequests).toBe(1);
    expect(await types(jobs, running.id)).toEqual(["error"]);
  });
});

describe("a job the gateway or the GPU server refuses", () => {
  /** A generation first, so the gateway knows how long one takes: a 503's Retry-After is then about a second. */
  async function warm(jobs: JobRunner): Promise<void> {
    await finished(jobs, (await jobs.submit("ip:warm", request())).job.id);
    emulator.reset();
  }

  it("stays queued while the GPU server answers 503 before starting it, and runs once the server takes it", async () => {
    const jobs = runner({ QUEUE_TIMEOUT: "30" });
    await warm(jobs);
    emulator.setDevice({ cudaAvailable: false });
    const { job } = await jobs.submit("ip:1", request());
    await expect.poll(() => types(jobs, job.id), { timeout: 5000 }).toContain("retrying");
    expect(await jobs.store.get(job.id)).toMatchObject({ status: "queued", started_at: null });
    const retrying = (await jobs.store.events(job.id, 0)).map((event) => JSON.parse(event.data) as Record<string, unknown>).find((event) => event.type === "retrying");
    // The server sent no Retry-After: the gateway's own, one generation's time rounded up to a second.
    expect(retrying).toMatchObject({ kind: "upstream_status", message: "CUDA not available", retry_in_ms: 1000 });
    emulator.setDevice({ cudaAvailable: true });
    expect((await finished(jobs, job.id)).status).toBe("succeeded");
    expect(emulator.stats().generateRequests).toBeGreaterThanOrEqual(2);
    expect(emulator.stats().completed).toBe(emulator.stats().generateRequests);
  });

  it("fails with the server's refusal once QUEUE_TIMEOUT after its submission has passed", async () => {
    const jobs = runner({ QUEUE_TIMEOUT: "2" });
    await warm(jobs);
    emulator.setDevice({ cudaAvailable: false });
    const { job } = await jobs.submit("ip:1", request());
    const done = await finished(jobs, job.id);
    expect(done).toMatchObject({ status: "failed", error: { kind: "upstream_status", detail: "CUDA not available" } });
    expect(Date.parse(done.completed_at ?? "") - Date.parse(done.created_at)).toBeLessThan(2500);
  });

  it("is never sent twice once the GPU server took it: a lost connection fails it", async () => {
    const jobs = runner({ QUEUE_TIMEOUT: "30" });
    emulator.setFault({ kind: "reset_mid_body" });
    const done = await finished(jobs, (await jobs.submit("ip:1", request())).job.id);
    expect(done.status).toBe("failed");
    expect(emulator.stats().generateRequests).toBe(1);
  });

  it("stays queued through a drain, for the next process, while the running one finishes", async () => {
    const jobs = runner({ MAX_CONCURRENT_REQUESTS: "1" });
    emulator.setStepMs(100);
    const running = (await jobs.submit("ip:1", request())).job;
    const queued = (await jobs.submit("ip:1", request({ seed: 2 }))).job;
    expect((await jobs.store.get(queued.id))?.status).toBe("queued");
    expect(await gateway.drain.drain(10_000, 1000)).toBe("drained");
    expect((await jobs.store.get(running.id))?.status).toBe("succeeded");
    expect((await jobs.store.get(queued.id))?.status).toBe("queued");
    expect(await types(jobs, queued.id)).not.toContain("error");
    expect(emulator.stats().generateRequests).toBe(1);
  });

  it("is refused and not kept when submitted during a drain: its idempotency key stays free", async () => {
    const jobs = runner();
    void gateway.drain.drain(1000, 100);
    await expect(jobs.submit("ip:1", request(), "key-1")).rejects.toMatchObject({ code: "shutting_down", status: 503 });
    expect(await jobs.store.find("ip:1", "key-1")).toBeUndefined();
    expect(await jobs.store.list("ip:1", 10)).toEqual([]);
  });

  it("is refused and not kept when the limiter refuses it (Redis down, REDIS_FAILURE_MODE=closed)", async () => {
    const jobs = runner({ REDIS_URL: "redis://127.0.0.1:1", REDIS_FAILURE_MODE: "closed" });
    await expect(jobs.submit("ip:1", request(), "key-2")).rejects.toMatchObject({ code: "limiter_unavailable", status: 503 });
    expect(await jobs.store.list("ip:1", 10)).toEqual([]);
    expect(emulator.stats().generateRequests).toBe(0);
  });
});

describe("what a job tells", () => {
  it("logs one line when it ends: id, owner, status, kind, queue wait, generation time, bytes", async () => {
    const jobs = runner({}, { logged: true });
    const done = await finished(jobs, (await jobs.submit("key:abc", request())).job.id);
    emulator.setFault({ kind: "status", status: 500, detail: "CUDA out of memory" });
    const failed = await finished(jobs, (await jobs.submit("key:abc", request({ seed: 2 }))).job.id);
    const jobLines = lines.filter((line) => line.msg === "job");
    expect(jobLines).toHaveLength(2);
    expect(jobLines[0]).toMatchObject({ level: "info", job_id: done.id, owner: "key:abc", status: "succeeded", bytes: done.output?.bytes });
    expect(jobLines[0]?.queue_wait_ms).toEqual(expect.any(Number));
    expect(jobLines[0]?.generation_ms).toEqual(expect.any(Number));
    expect(jobLines[1]).toMatchObject({ level: "warn", job_id: failed.id, status: "failed", error_kind: "upstream_status" });
  });

  it("counts its GPU server's failures in gateway_upstream_errors_total, as a request's", async () => {
    const jobs = runner();
    emulator.setFault({ kind: "status", status: 500, detail: "CUDA out of memory" });
    await finished(jobs, (await jobs.submit("ip:1", request())).job.id);
    const text = await gateway.metrics.registry.metrics();
    expect(text).toMatch(/^gateway_upstream_errors_total\{route="\/api\/jobs",kind="upstream_status"\} 1$/m);
  });

  it("logs an internal failure at error, with its cause", async () => {
    const jobs = runner({}, { logged: true });
    const { job } = await jobs.submit("ip:1", request());
    // The store's disk taken away under a running job: its image cannot be kept.
    rmSync(path.join(dir, "images"), { recursive: true, force: true });
    const done = await finished(jobs, job.id);
    expect(done).toMatchObject({ status: "failed", error: { kind: "internal" } });
    const line = lines.find((entry) => entry.msg === "job");
    expect(line).toMatchObject({ level: "error", error_kind: "internal", err: { message: expect.stringMatching(/ENOENT/) as unknown } });
  });
});

describe("what jobs keep", () => {
  it("keeps one queued event per job while many wait, and tells each change to those listening", async () => {
    const jobs = runner({ MAX_CONCURRENT_REQUESTS: "1", MAX_QUEUE: "100" });
    emulator.setStepMs(5);
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push((await jobs.submit("ip:1", request({ seed: i }))).job.id);
    const last = ids.at(-1) ?? "";
    const heard: number[] = [];
    jobs.log.listen(last, (event) => {
      const data = JSON.parse(event.data) as { type: string; queue_position?: number };
      if (data.type === "queued" && data.queue_position !== undefined) heard.push(data.queue_position);
    });
    for (const id of ids) await finished(jobs, id);
    const queuedKept = await Promise.all(ids.map(async (id) => (await types(jobs, id)).filter((type) => type === "queued").length));
    // One for its place in the gateway's line (the first), one the GPU server's own queued event.
    expect(Math.max(...queuedKept), "queued events kept per job").toBeLessThanOrEqual(2);
    expect(queuedKept.reduce((sum, count) => sum + count, 0)).toBeLessThanOrEqual(60);
    expect(heard.length, "its places as it moved up").toBeGreaterThan(5);
    expect(heard).toEqual([...heard].sort((a, b) => b - a));
  });

  it("keeps the images within DATA_MAX_BYTES as each is written, the oldest jobs going", async () => {
    const jobs = runner({ DATA_MAX_BYTES: "30000" }); // two 256x256 JPEGs of the emulator, about 12 KB each
    for (let seed = 1; seed <= 6; seed++) {
      await finished(jobs, (await jobs.submit("ip:1", request({ seed }))).job.id);
      expect((await jobs.store.usage()).bytes).toBeLessThanOrEqual(30_000);
    }
    expect((await jobs.store.usage()).images).toBeLessThan(6);
    expect(readdirSync(path.join(dir, "images")).filter((name) => name.endsWith(".partial"))).toEqual([]);
  });

  it("fails a job whose image is larger than DATA_MAX_BYTES with storage_full", async () => {
    const jobs = runner({ DATA_MAX_BYTES: "1000" });
    const done = await finished(jobs, (await jobs.submit("ip:1", request())).job.id);
    expect(done).toMatchObject({ status: "failed", error: { kind: "storage_full" } });
    expect(done.error?.detail).toMatch(/larger than DATA_MAX_BYTES \(1000\)/);
  });

  it("keeps at most MAX_JOBS: the oldest finished go to make room, and with none finished a new one is a 503", async () => {
    const jobs = runner({ MAX_JOBS: "3", MAX_CONCURRENT_REQUESTS: "1" });
    const first = (await jobs.submit("ip:1", request({ seed: 1 }))).job;
    await finished(jobs, first.id);
    emulator.setStepMs(300);
    const waiting = [];
    for (let seed = 2; seed <= 4; seed++) waiting.push((await jobs.submit("ip:1", request({ seed }))).job.id);
    expect(await jobs.store.get(first.id), "the finished one made room").toBeUndefined();
    await expect(jobs.submit("ip:1", request({ seed: 5 }))).rejects.toMatchObject({ code: "store_full", status: 503 });
    expect(await jobs.store.size()).toBe(3);
    for (const id of waiting) await jobs.cancel(id);
  });
});
