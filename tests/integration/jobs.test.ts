/** Jobs through the built server, on real files: submit, wait, poll, fetch the image, follow and resume, cancel, keys, restart. */
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeEach, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { SqliteJobStore } from "@/lib/jobs/store";
import { JobEvent } from "@/lib/api-shapes";
import { it } from "./fixtures";
import { collectGarbage, directImage, eventually as eventuallyTrue, listeningPid, readEvents, residentBytes } from "./harness";
import type { Gateway } from "./harness";

interface JobBody {
  id: string;
  status: string;
  output: { image_url: string; sha256: string; content_type: string; seed: string } | null;
  error: { kind: string } | null;
  queue_position: number | null;
  urls: { self: string; cancel: string; events: string };
  input: Record<string, unknown>;
}

const body = { prompt: "a lighthouse", width: 256, height: 256, num_inference_steps: 6, seed: 42 };
let emulator: Emulator;
let gateway: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  emulator = await startEmulator({ stepMs: 20, slots: 8 });
  gateway = await startFileGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, MAX_CONCURRENT_REQUESTS: "1" });
});

afterAll(() => emulator.close());

beforeEach(() => {
  emulator.reset();
  emulator.setStepMs(20);
});

async function submit(fields: Record<string, unknown> = {}, headers: Record<string, string> = {}, to = gateway) {
  const response = await fetch(`${to.url}/api/jobs`, { method: "POST", body: JSON.stringify({ ...body, ...fields }), headers: { "content-type": "application/json", ...headers } });
  return { response, job: (await response.json()) as JobBody };
}

async function poll(id: string, to = gateway, headers: Record<string, string> = {}): Promise<JobBody> {
  for (;;) {
    const job = (await (await fetch(`${to.url}/api/jobs/${id}`, { headers })).json()) as JobBody;
    if (["succeeded", "failed", "canceled"].includes(job.status)) return job;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

type StreamedEvent = { id: number; type: string; output?: JobBody["output"] };

/** The events of a stream, read until it ends or `stopAfter` have come (then the client hangs up). */
async function events(url: string, headers: Record<string, string> = {}, stopAfter = Infinity): Promise<StreamedEvent[]> {
  const received = await readEvents(await fetch(url, { headers }), performance.now(), stopAfter);
  return received.flatMap(({ id, data }) => (id !== undefined && data ? [{ id: Number(id), ...(data as { type: string }) }] : []));
}

describe("jobs", () => {
  it("answers 200 with the finished job within Prefer: wait, its image by URL byte for byte, cached for good", async () => {
    const { response, job } = await submit({}, { prefer: "wait=30" });
    expect(response.status).toBe(200);
    expect(response.headers.get("location")).toBe(`/api/jobs/${job.id}`);
    expect(job).toMatchObject({ status: "succeeded", error: null, output: { content_type: "image/jpeg", seed: "42" }, input: { prompt: "a lighthouse", seed: 42 } });
    const direct = await directImage(emulator.url, { ...body, negative_prompt: "", guidance_scale: 0 });
    const image = await fetch(`${gateway.url}${job.output?.image_url ?? ""}`);
    const bytes = Buffer.from(await image.arrayBuffer());
    expect(`data:image/jpeg;base64,${bytes.toString("base64")}`).toBe(direct);
    expect(image.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    const etag = image.headers.get("etag") ?? "";
    expect(etag).toBe(`"${job.output?.sha256}"`);
    expect((await fetch(`${gateway.url}${job.output?.image_url}`, { headers: { "if-none-match": etag } })).status).toBe(304);
    const noImage = await fetch(`${gateway.url}/api/images/${"0".repeat(64)}`);
    expect(noImage.status).toBe(404);
    expect(((await noImage.json()) as { detail: string }).detail).toBe(`No image ${"0".repeat(64)} here: unknown, or expired with its job`);
    const noJob = await fetch(`${gateway.url}/api/jobs/not-a-job/events`);
    expect(noJob.status).toBe(404);
    expect(((await noJob.json()) as { detail: string }).detail).toBe("No job not-a-job here: unknown, expired, or another caller's");
    const metrics = await (await fetch(`${gateway.url}/api/metrics/gateway`)).text();
    expect(metrics).toMatch(/^gateway_jobs\{status="succeeded"\} [1-9]/m);
    expect(metrics).toMatch(/^gateway_images_stored [1-9]/m);
    expect(metrics).toMatch(new RegExp(`^gateway_images_bytes ${bytes.length}$`, "m"));
    expect(metrics).toMatch(/^gateway_job_queue_wait_seconds_count [1-9]/m);
  });

  it("answers 202 and its Location while the job runs, and the job polled there ends succeeded", async () => {
    emulator.setStepMs(60);
    const { response, job } = await submit();
    expect(response.status).toBe(202);
    expect(["queued", "running"]).toContain(job.status);
    expect((await poll(job.id)).status).toBe("succeeded");
  });

  it("gives one job for one Idempotency-Key, however often it is sent, and a 422 for another body", async () => {
    const answers = await Promise.all(Array.from({ length: 5 }, () => submit({}, { "idempotency-key": "order-1" })));
    const ids = new Set(answers.map(({ job }) => job.id));
    expect(ids.size).toBe(1);
    expect(answers.filter(({ response }) => response.headers.get("idempotent-replayed") === "true")).toHaveLength(4);
    const changed = await submit({ prompt: "another" }, { "idempotency-key": "order-1" });
    expect(changed.response.status).toBe(422);
    await poll([...ids][0] as string);
    expect(emulator.stats().generateRequests).toBe(1);
  });

  it("streams a job's events, and a stream resumed with Last-Event-ID misses and repeats nothing", async () => {
    emulator.setStepMs(80);
    const { job } = await submit({ num_inference_steps: 8 });
    const first = await events(`${gateway.url}${job.urls.events}`, {}, 3);
    const rest = await events(`${gateway.url}${job.urls.events}`, { "last-event-id": String(first.at(-1)?.id) });
    const all = [...first, ...rest];
    expect(all.map((event) => event.id)).toEqual(all.map((_, i) => i + 1));
    expect(all.at(-1)?.type).toBe("complete");
    // The terminal event is the job's output, its image by URL.
    expect(all.at(-1)?.output).toEqual((await poll(job.id)).output);
    expect(all.at(-1)?.output?.image_url).toMatch(/^\/api\/images\/[0-9a-f]{64}\.jpg$/);
    // After the end: every event at once, then the stream ends.
    expect((await events(`${gateway.url}${job.urls.events}`)).map((event) => event.id)).toEqual(all.map((event) => event.id));
  });

  it.each(["999999", "Infinity", "1e400"])("answers Last-Event-ID: %s past the last event with headers at once, and ends the stream when the job ends", async (lastEventId) => {
    emulator.setStepMs(150);
    const { job } = await submit({ seed: 77 });
    const sentAt = performance.now();
    const response = await fetch(`${gateway.url}${job.urls.events}`, { headers: { "last-event-id": lastEventId } });
    expect(performance.now() - sentAt, "headers before the first keep-alive (15 s)").toBeLessThan(2000);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const received = await readEvents(response, sentAt);
    expect(received.filter((event) => event.data), "nothing after the last event it named").toEqual([]);
    expect((await poll(job.id)).status).toBe("succeeded");
    expect(performance.now() - sentAt, "ended with the job, not kept open by keep-alives").toBeLessThan(10_000);
  });

  it("writes its events as /api/generate-stream does: each a shape of the documented JobEvent, a failure as {type, kind, message}", async () => {
    emulator.setFault({ kind: "status", status: 500, detail: "CUDA out of memory" });
    const { job } = await submit({ seed: 78 });
    const received = await events(`${gateway.url}${job.urls.events}`);
    for (const event of received) expect(() => JobEvent.parse(event)).not.toThrow();
    expect(received.at(-1)).toMatchObject({ type: "error", kind: "upstream_status", message: "Text-to-image server error: CUDA out of memory" });
  });

  it("lets go of a Prefer: wait whose client left: its request ends then, not when the wait would", async () => {
    emulator.setStepMs(500); // 3 s a job
    const client = new AbortController();
    const printed = gateway.output().length;
    const token = { "x-client-token": "waiting-client-token-01" };
    const waiting = fetch(`${gateway.url}/api/jobs`, { method: "POST", body: JSON.stringify({ ...body, seed: 79 }), headers: { "content-type": "application/json", prefer: "wait=60", ...token }, signal: client.signal });
    await expect.poll(() => emulator.stats().active).toBe(1);
    client.abort();
    await waiting.catch(() => undefined);
    const logged = () => gateway.output().slice(printed).includes('"route":"/api/jobs","method":"POST"');
    expect(await eventuallyTrue(logged, 1500), "the request's log line, written when it ends").toBe(true);
    // The job itself runs on to its end, as a job does without anyone waiting for it.
    const [left] = ((await (await fetch(`${gateway.url}/api/jobs?limit=1`, { headers: token })).json()) as { jobs: JobBody[] }).jobs;
    expect((await poll(left?.id ?? "")).status).toBe("succeeded");
  });

  it("says in its 202 where a job stands (running, or queued with its place), and cancels a queued one before it reaches the GPU", async () => {
    emulator.setStepMs(150);
    const running = await submit({ num_inference_steps: 12 });
    const queued = await submit();
    expect(running.job).toMatchObject({ status: "running", queue_position: null });
    expect(queued.job).toMatchObject({ status: "queued", queue_position: 1 });
    const canceled = (await (await fetch(`${gateway.url}${queued.job.urls.cancel}`, { method: "POST" })).json()) as JobBody;
    expect(canceled.status).toBe("canceled");
    await poll(running.job.id);
    expect(emulator.stats().generateRequests).toBe(1);
  });

  it("cancels a running job: the GPU server sees its request aborted within a second", async () => {
    emulator.setStepMs(150);
    const { job } = await submit({ num_inference_steps: 12 });
    await expect.poll(() => emulator.stats().active).toBe(1);
    const canceledAt = performance.now();
    const canceled = (await (await fetch(`${gateway.url}${job.urls.cancel}`, { method: "POST" })).json()) as JobBody;
    expect(canceled.status).toBe("canceled");
    await expect.poll(() => emulator.stats().aborted, { interval: 20 }).toBe(1);
    expect(performance.now() - canceledAt).toBeLessThan(1000);
    // Canceled stays canceled, and a second cancel gives the job back unchanged.
    const again = (await (await fetch(`${gateway.url}${job.urls.cancel}`, { method: "POST" })).json()) as JobBody;
    expect(again).toEqual(canceled);
  });

  it("answers 501 on every jobs and images path with JOBS=false, and leaves DATA_DIR untouched", async ({ startGateway }) => {
    const unused = path.join(gateway.dataDir, "never-made");
    const off = await startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, DATA_DIR: unused, JOBS: "false" });
    expect(((await (await fetch(`${off.url}/api`)).json()) as { jobs: boolean }).jobs).toBe(false);
    const answers = await Promise.all([
      fetch(`${off.url}/api/jobs`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
      fetch(`${off.url}/api/jobs`),
      fetch(`${off.url}/api/jobs/abc/events`),
      fetch(`${off.url}/api/images/${"0".repeat(64)}.jpg`),
    ]);
    for (const answer of answers) {
      expect(answer.status).toBe(501);
      expect(((await answer.json()) as { detail: string }).detail).toMatch(/^Jobs are off on this gateway .*use \/api\/generate/);
    }
    expect(existsSync(unused)).toBe(false);
    expect(emulator.stats().generateRequests).toBe(0);
  });

  it.each(["1.5", "0", "101", "abc", "", "-1"])("refuses limit=%s with a 400 that names it (it was a 500 from SQLite)", async (limit) => {
    const response = await fetch(`${gateway.url}/api/jobs?limit=${limit}`);
    expect(response.status).toBe(400);
    expect(((await response.json()) as { detail: string }).detail).toBe("limit: must be a whole number from 1 to 100");
  });

  it("pages the list with limit and before", async () => {
    const token = { "x-client-token": "pages-client-token-0001" };
    const [first, second] = [await submit({ seed: 1 }, token), await submit({ seed: 2 }, token)];
    const page = (await (await fetch(`${gateway.url}/api/jobs?limit=1`, { headers: token })).json()) as { jobs: JobBody[]; next: string };
    expect(page.jobs.map((job) => job.id)).toEqual([second.job.id]);
    const next = (await (await fetch(`${gateway.url}/api/jobs?limit=1&before=${page.next}`, { headers: token })).json()) as { jobs: JobBody[] };
    expect(next.jobs.map((job) => job.id)).toEqual([first.job.id]);
  });

  it("without API keys, lists a caller's jobs by its client token, never by the address it shares with others", async () => {
    const alice = { "x-client-token": "alice-browser-token-0001" };
    const bob = { "x-client-token": "bob-browser-token-00002" };
    const { job } = await submit({ seed: 3, prompt: "alice's secret prompt" }, alice);
    const list = async (headers: Record<string, string>) => ((await (await fetch(`${gateway.url}/api/jobs`, { headers })).json()) as { jobs: JobBody[] }).jobs.map((entry) => entry.id);
    expect(await list(alice)).toContain(job.id);
    expect(await list(bob), "another token at the same address").not.toContain(job.id);
    expect(await list({}), "no token: nothing is listed").toEqual([]);
    // Without a token, a job is reached by its id alone (128 random bits), and listed to no one.
    const anonymous = await submit({ seed: 4 });
    expect(await list({})).toEqual([]);
    expect((await fetch(`${gateway.url}/api/jobs/${anonymous.job.id}`)).status).toBe(200);
    const bad = await fetch(`${gateway.url}/api/jobs`, { headers: { "x-client-token": "short" } });
    expect([bad.status, ((await bad.json()) as { detail: string }).detail]).toEqual([400, "X-Client-Token must be 16 to 128 letters, digits, - or _"]);
    await poll(job.id);
    await poll(anonymous.job.id);
  });

  it("serves an image as a static file: Content-Length, Range, HEAD; 40 clients that read nothing hold little memory", async ({ startGateway, onTestFinished }) => {
    // Noise PNGs of 2048x2048, which do not compress: 4 MB an image.
    const noisy = await startEmulator({ stepMs: 1, image: "noise", imageFormat: "png" });
    onTestFinished(() => noisy.close());
    // The inspector's port, so memory is read after a full collection (what is held, not garbage).
    const own = await startGateway({ TEXT2IMAGE_SERVER_URL: noisy.url, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --inspect-port=127.0.0.1:0`.trim() });
    const { job } = await submit({ width: 2048, height: 2048 }, { prefer: "wait=30" }, own);
    const url = `${own.url}${job.output?.image_url ?? ""}`;
    const whole = await fetch(url);
    const bytes = Buffer.from(await whole.arrayBuffer());
    expect(bytes.length).toBeGreaterThan(4_000_000);
    expect(whole.headers.get("content-length")).toBe(String(bytes.length));
    expect(whole.headers.get("accept-ranges")).toBe("bytes");
    const part = await fetch(url, { headers: { range: "bytes=1000-1999" } });
    expect([part.status, part.headers.get("content-range")]).toEqual([206, `bytes 1000-1999/${bytes.length}`]);
    expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(1000, 2000))).toBe(true);
    expect((await fetch(url, { headers: { range: `bytes=${bytes.length}-` } })).status).toBe(416);
    const head = await fetch(url, { method: "HEAD" });
    expect([head.status, head.headers.get("content-length")]).toEqual([200, String(bytes.length)]);

    const pid = listeningPid(own);
    await collectGarbage(own, pid);
    const before = residentBytes(pid);
    const path = new URL(url).pathname;
    const stalled = Array.from({ length: 40 }, () => connect(Number(new URL(own.url).port), "127.0.0.1").pause());
    for (const socket of stalled) socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await collectGarbage(own, pid);
    const grown = residentBytes(pid) - before;
    for (const socket of stalled) socket.destroy();
    // Whole files held in memory were 40 × 2 copies of 4.5 MB (360 MB). Streamed, each holds a chunk or two;
    // the chunks already written to the kernel's buffers are freed, but the allocator keeps some mapped (about 40 MB here).
    expect(grown, `resident memory grew ${Math.round(grown / 1e6)} MB`).toBeLessThan(100_000_000);
  });

  it("keeps another key's jobs out of sight: 404 to read or cancel, absent from the list", async ({ startGateway }) => {
    const keyed = await startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, GATEWAY_API_KEYS: "alice-key-0123456789,bob-key-0123456789" });
    const { job } = await submit({}, { authorization: "Bearer alice-key-0123456789" }, keyed);
    expect((await fetch(`${keyed.url}/api/jobs/${job.id}`, { headers: { "x-api-key": "bob-key-0123456789" } })).status).toBe(404);
    expect((await fetch(`${keyed.url}/api/jobs/${job.id}/cancel`, { method: "POST", headers: { "x-api-key": "bob-key-0123456789" } })).status).toBe(404);
    expect((await fetch(`${keyed.url}/api/jobs/${job.id}`)).status).toBe(401);
    const list = (await (await fetch(`${keyed.url}/api/jobs`, { headers: { "x-api-key": "bob-key-0123456789" } })).json()) as { jobs: JobBody[] };
    expect(list.jobs).toEqual([]);
    const own = (await (await fetch(`${keyed.url}/api/jobs`, { headers: { "x-api-key": "alice-key-0123456789" } })).json()) as { jobs: JobBody[] };
    expect(own.jobs.map((entry) => entry.id)).toEqual([job.id]);
    // Its image: by its signed URL without a key (as <img src> fetches it), else with a key.
    const done = await poll(job.id, keyed, { "x-api-key": "alice-key-0123456789" });
    const signed = done.output?.image_url ?? "";
    expect(signed).toMatch(/\?expires=\d+&sig=[\w-]+$/);
    expect((await fetch(`${keyed.url}${signed}`)).status).toBe(200);
    // Flip the signature's first character to one it is not, so the tamper is never a no-op.
    const tampered = signed.replace(/sig=(.)/, (_, first: string) => `sig=${first === "A" ? "B" : "A"}`);
    expect(tampered).not.toBe(signed);
    expect((await fetch(`${keyed.url}${tampered}`)).status).toBe(401);
    // By its plain path: only a key whose job made it. Any other request gets the answer an unknown hash gets.
    const bare = signed.split("?")[0] ?? "";
    const unknown = `/api/images/${"0".repeat(64)}.jpg`;
    expect((await fetch(`${keyed.url}${bare}`, { headers: { "x-api-key": "alice-key-0123456789" } })).status).toBe(200);
    for (const path of [bare, unknown]) {
      expect((await fetch(`${keyed.url}${path}`)).status, path).toBe(401);
      expect((await fetch(`${keyed.url}${path}`, { headers: { "x-api-key": "wrong-key-0123456789" } })).status, path).toBe(401);
      const bob = await fetch(`${keyed.url}${path}`, { headers: { "x-api-key": "bob-key-0123456789" } });
      expect(bob.status, path).toBe(404);
      expect(((await bob.json()) as { detail: string }).detail).toMatch(/^No image [0-9a-f]{64}\.jpg here/);
    }
  });

  it("is one process's: a second gateway on its DATA_DIR exits at start, naming DATA_DIR and the holder", async ({ startGateway }) => {
    const pid = listeningPid(gateway);
    const second = await startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, DATA_DIR: gateway.dataDir }).then(
      () => "started",
      (error: unknown) => String(error),
    );
    expect(second).toMatch(/^Error: gateway exited with 1:/);
    expect(second).toContain(`DATA_DIR=${gateway.dataDir} is in use by another gateway process (pid ${pid}): give each process its own DATA_DIR`);
    expect((await fetch(`${gateway.url}/api/jobs`)).status, "the first one serves on").toBe(200);
  });

  it("trims a store far over DATA_MAX_BYTES at start in batches, answering health meanwhile (it froze start-up for seconds)", async ({ startGateway, onTestFinished }) => {
    const dir = mkdtempSync(path.join(tmpdir(), "jobs-trim-"));
    onTestFinished(() => {
      rmSync(dir, { recursive: true, force: true });
    });
    const store = new SqliteJobStore(dir);
    for (let i = 0; i < 3000; i++) {
      const bytes = Buffer.from(`image ${i} `.repeat(20));
      const sha256 = createHash("sha256").update(bytes).digest("hex");
      await store.putImage(bytes, "image/jpeg", sha256);
      const { job } = await store.create("ip:old", '{"prompt":"old"}');
      await store.update(job.id, { status: "succeeded", completed_at: new Date().toISOString(), output: { sha256, content_type: "image/jpeg", bytes: bytes.length, width: null, height: null, seed: null, generation_time_ms: null, image_id: null } });
    }
    store.close();
    const started = performance.now();
    const trimmed = await startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, DATA_DIR: dir, DATA_MAX_BYTES: "2000" });
    expect(performance.now() - started, "start-up").toBeLessThan(15_000);
    let slowest = 0;
    const bytes = async () => Number(/^gateway_images_bytes (\d+)$/m.exec(await (await fetch(`${trimmed.url}/api/metrics/gateway`)).text())?.[1]);
    for (let probe = 0; probe < 100 && (await bytes()) > 2000; probe++) {
      const sentAt = performance.now();
      await fetch(`${trimmed.url}/api/health`);
      slowest = Math.max(slowest, performance.now() - sentAt);
    }
    expect(await bytes()).toBeLessThanOrEqual(2000);
    expect(slowest, "the slowest health answer while the store was trimmed").toBeLessThan(1000);
  });

  it("after kill -9, a restart runs the queued job, fails the running one as gateway_restarted, and still serves the finished one's image", async ({ startGateway, onTestFinished }) => {
    const dir = mkdtempSync(path.join(tmpdir(), "jobs-kill-"));
    onTestFinished(() => {
      rmSync(dir, { recursive: true, force: true });
    });
    const env = { TEXT2IMAGE_SERVER_URL: emulator.url, DATA_DIR: dir, MAX_CONCURRENT_REQUESTS: "1" };
    const first = await startGateway(env);
    const finished = await submit({}, { prefer: "wait=30" }, first);
    expect(finished.job.status).toBe("succeeded");
    const image = Buffer.from(await (await fetch(`${first.url}${finished.job.output?.image_url}`)).arrayBuffer());
    emulator.setStepMs(300);
    const running = await submit({ num_inference_steps: 12 }, {}, first);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const queued = await submit({}, {}, first);
    first.process.kill("SIGKILL");
    await first.stop();
    emulator.setStepMs(20);
    const second = await startGateway(env);
    expect((await poll(queued.job.id, second)).status).toBe("succeeded");
    expect(await poll(running.job.id, second)).toMatchObject({ status: "failed", error: { kind: "gateway_restarted" } });
    // What had finished is as it was, its image still served byte for byte.
    expect(await poll(finished.job.id, second)).toMatchObject({ status: "succeeded", output: finished.job.output });
    expect(Buffer.from(await (await fetch(`${second.url}${finished.job.output?.image_url}`)).arrayBuffer())).toEqual(image);
  });
});
