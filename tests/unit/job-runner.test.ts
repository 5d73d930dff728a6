/** Jobs run in-process: a real registry and emulator, a real SQLite store in a temporary directory. */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startEmulator } from "@/emulator/server";
import type { Emulator } from "@/emulator/server";
import { parseConfig } from "@/lib/config";
import { JobRunner } from "@/lib/jobs/runner";
import { SqliteJobStore } from "@/lib/jobs/store";
import type { Job } from "@/lib/jobs/store";
import { Registry, setRegistry } from "@/lib/registry";
import { validateGenerateRequest } from "@/lib/schemas";
import type { GenerateRequest } from "@/lib/schemas";

let emulator: Emulator;
let gateway: Registry;
let dir: string;
let store: SqliteJobStore;

beforeAll(async () => {
  emulator = await startEmulator({ stepMs: 10, slots: 8 });
});
afterAll(async () => {
  await emulator.close();
});
afterEach(async () => {
  emulator.reset();
  await gateway.close(1000);
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

function runner(env: Record<string, string> = {}): JobRunner {
  gateway = new Registry(parseConfig({ TEXT2IMAGE_SERVER_URL: emulator.url, LOG_LEVEL: "silent", ...env }));
  setRegistry(gateway);
  dir = mkdtempSync(path.join(tmpdir(), "jobs-"));
  store = new SqliteJobStore(dir);
  return new JobRunner(gateway, store);
}

function request(fields: Record<string, unknown> = {}): GenerateRequest {
  const result = validateGenerateRequest({ prompt: "a lighthouse", width: 256, height: 256, num_inference_steps: 6, ...fields });
  if (!result.ok) throw new Error("invalid");
  return result.data;
}

/** Resolves with the job once it has finished. */
async function finished(jobs: JobRunner, id: string): Promise<Job> {
  await expect.poll(() => ["succeeded", "failed", "canceled"].includes(jobs.store.get(id)?.status ?? ""), { timeout: 10_000 }).toBe(true);
  return jobs.store.get(id) as Job;
}

const types = (jobs: JobRunner, id: string) => jobs.store.events(id, 0).map((event) => (JSON.parse(event.data) as { type: string }).type);

describe("a job", () => {
  it("runs to its image, kept as a file byte for byte, its events kept in order", async () => {
    const jobs = runner();
    const heard: number[] = [];
    const { job, created } = jobs.submit("ip:1", request({ seed: 42 }));
    jobs.listen(job.id, (event) => heard.push(event.seq));
    expect(created).toBe(true);
    const done = await finished(jobs, job.id);
    expect(done).toMatchObject({ status: "succeeded", error: null, output: { content_type: "image/jpeg", width: 256, height: 256, seed: "42" } });
    expect(done.started_at).not.toBeNull();
    const direct = (await (
      await fetch(`${emulator.url}/generate`, { method: "POST", body: JSON.stringify({ prompt: "a lighthouse", negative_prompt: "", width: 256, height: 256, num_inference_steps: 6, guidance_scale: 0, seed: 42 }), headers: { "content-type": "application/json" } })
    ).json()) as { image_base64: string };
    const file = jobs.store.image(done.output?.sha256 ?? "")?.file ?? "";
    expect(`data:image/jpeg;base64,${readFileSync(file).toString("base64")}`).toBe(direct.image_base64);
    const kept = types(jobs, job.id);
    expect(kept).toContain("progress");
    expect(kept.at(-1)).toBe("complete");
    expect(jobs.store.events(job.id, 0).at(-1)?.data).not.toContain("base64");
    expect(heard.length).toBeGreaterThan(0);
    expect(heard).toEqual(jobs.store.events(job.id, heard[0] ? heard[0] - 1 : 0).map((event) => event.seq));
  });

  it("is created once for an idempotency key, however often it is sent", async () => {
    const jobs = runner();
    const first = jobs.submit("key:a", request(), "order-7");
    const replays = Array.from({ length: 4 }, () => jobs.submit("key:a", request(), "order-7"));
    expect(replays.every((replay) => !replay.created && replay.job.id === first.job.id)).toBe(true);
    await finished(jobs, first.job.id);
    expect(emulator.stats().generateRequests).toBe(1);
  });

  it("canceled while queued never reaches the GPU; canceled while running has its upstream call aborted", async () => {
    const jobs = runner({ MAX_CONCURRENT_REQUESTS: "1" });
    emulator.setStepMs(200);
    const running = jobs.submit("ip:1", request({ num_inference_steps: 12 })).job;
    await expect.poll(() => emulator.stats().active).toBe(1);
    const queued = jobs.submit("ip:1", request()).job;
    await expect.poll(() => gateway.limiter.stats().queued).toBe(1);
    expect(jobs.cancel(queued.id)?.status).toBe("canceled");
    await expect.poll(() => gateway.limiter.stats().queued).toBe(0);
    expect(jobs.cancel(running.id)?.status).toBe("canceled");
    await expect.poll(() => emulator.stats().aborted, { timeout: 2000 }).toBe(1);
    expect(emulator.stats().generateRequests).toBe(1);
    expect(types(jobs, queued.id).at(-1)).toBe("canceled");
    // Canceling again, or a finished job, changes nothing.
    expect(jobs.cancel(running.id)?.status).toBe("canceled");
    expect(types(jobs, running.id).filter((type) => type === "canceled")).toHaveLength(1);
  });

  it("fails with the error table's kind and detail when the GPU server fails", async () => {
    const jobs = runner();
    emulator.setFault({ kind: "status", status: 500, detail: "CUDA out of memory" });
    const done = await finished(jobs, jobs.submit("ip:1", request()).job.id);
    expect(done).toMatchObject({ status: "failed", error: { kind: "upstream_status", detail: "Text-to-image server error: CUDA out of memory" } });
  });

  it("left queued by a previous process runs at start; left running fails as gateway_restarted, never run twice", async () => {
    const jobs = runner();
    const queued = store.create("ip:1", '{"prompt":"left queued","width":256,"height":256,"num_inference_steps":6,"seed":12345678901234567890}').job;
    const running = store.create("ip:1", '{"prompt":"left running","width":256,"height":256,"num_inference_steps":6}').job;
    store.update(running.id, { status: "running", started_at: new Date().toISOString() });
    jobs.resume();
    expect((await finished(jobs, queued.id)).output?.seed).toBe("12345678901234567890");
    expect(store.get(running.id)).toMatchObject({ status: "failed", error: { kind: "gateway_restarted" } });
    expect(emulator.stats().generateRequests).toBe(1);
    expect(types(jobs, running.id)).toEqual(["error"]);
  });
});
