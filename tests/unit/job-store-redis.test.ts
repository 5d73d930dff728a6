/** The shared job store (JOB_STORE=redis) on a real redis-server, two stores standing for two gateways. */
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { FileImageStore } from "@/lib/jobs/images";
import { RedisJobStore } from "@/lib/jobs/redis-store";
import type { JobLogEntry } from "@/lib/jobs/types";
import { startRedisServer } from "../redis-server";
import type { RedisServer } from "../redis-server";

let redis: RedisServer;
let dir: string;
const stores: RedisJobStore[] = [];

beforeAll(async () => {
  redis = await startRedisServer();
  dir = mkdtempSync(path.join(tmpdir(), "jobs-redis-"));
});

afterEach(() => {
  for (const store of stores.splice(0)) store.close();
});

afterAll(async () => {
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
});

const INPUT = '{"prompt":"a fox","negative_prompt":"","height":256,"width":256,"num_inference_steps":6,"guidance_scale":0,"seed":1}';

/** Gateways of one deployment: the same Redis, the same prefix, the same images. */
function gateways(count: number, options: { leaseTtlMs?: number; jobTtlMs?: number } = {}): RedisJobStore[] {
  const keyPrefix = `test-${randomBytes(4).toString("hex")}:`;
  const images = new FileImageStore(path.join(dir, keyPrefix));
  return Array.from({ length: count }, () => {
    const store = new RedisJobStore({ redisUrl: redis.url, images, jobTtlMs: options.jobTtlMs ?? 60_000, leaseTtlMs: options.leaseTtlMs ?? 3000, keyPrefix });
    stores.push(store);
    return store;
  });
}

describe("the Redis job store", () => {
  it("makes one job per idempotency key across gateways, readable and listed on each", async () => {
    const [a, b] = gateways(2) as [RedisJobStore, RedisJobStore];
    const made = await Promise.all([a.create("key:a", INPUT, "k1"), b.create("key:a", INPUT, "k1"), a.create("key:a", INPUT, "k1")]);
    expect(made.filter((result) => result.created)).toHaveLength(1);
    expect(new Set(made.map((result) => result.job.id)).size).toBe(1);
    const id = made[0].job.id;
    expect(await b.get(id)).toMatchObject({ id, owner: "key:a", status: "queued", input: INPUT, output: null, idempotency_key: "k1" });
    expect(await b.find("key:a", "k1")).toMatchObject({ id });
    const more = [(await a.create("key:a", INPUT)).job.id, (await b.create("key:a", INPUT)).job.id];
    const page = await b.list("key:a", 2);
    expect(page.map((job) => job.id)).toEqual([...more].reverse());
    expect((await a.list("key:a", 2, page.at(-1)?.id)).map((job) => job.id)).toEqual([id]);
    expect(await a.list("key:b", 10)).toEqual([]);
  });

  it("moves a job on until it ends, never after, and sets what it kept to expire", async () => {
    const [a, b] = gateways(2, { jobTtlMs: 600 }) as [RedisJobStore, RedisJobStore];
    const { job } = await a.create("ip:1", INPUT, "k");
    expect(await b.update(job.id, { status: "running", started_at: "2026-12-06T00:00:01.000Z" })).toBe(true);
    expect(await a.update(job.id, { status: "failed", completed_at: "2026-12-06T00:00:02.000Z", error: { kind: "x", detail: "y" } })).toBe(true);
    expect(await b.update(job.id, { status: "canceled" })).toBe(false);
    expect(await b.get(job.id)).toMatchObject({ status: "failed", error: { kind: "x", detail: "y" }, started_at: "2026-12-06T00:00:01.000Z" });
    expect(await a.size()).toBe(0);
    await expect.poll(() => a.get(job.id), { timeout: 3000 }).toBeUndefined();
    expect(await a.find("ip:1", "k")).toBeUndefined();
  });

  it("keeps events in order with their ids, and tells every gateway's listeners, the ones not kept (a place in line, one past the limit) included", async () => {
    const [a, b] = gateways(2) as [RedisJobStore, RedisJobStore];
    const { job } = await a.create("ip:1", INPUT);
    const heard: JobLogEntry[] = [];
    b.shared.onEvent((id, event) => heard.push(event));
    b.shared.watch(job.id);
    await new Promise((resolve) => setTimeout(resolve, 100)); // the subscription is made
    for (const step of [1, 2, 3]) await a.append(job.id, `{"type":"progress","step":${step}}`);
    await a.shared.tell(job.id, '{"type":"queued","queue_position":2}');
    expect(await a.append(job.id, '{"type":"progress"}', 3)).toBeUndefined();
    expect((await b.events(job.id, 1)).map((event) => event.seq)).toEqual([2, 3]);
    // An event past the log's limit is not kept, but heard live, as without Redis.
    await expect.poll(() => heard.length).toBe(5);
    expect(heard.map((event) => [event.seq, event.live ?? false])).toEqual([[1, false], [2, false], [3, false], [0, true], [0, true]]);
    expect(heard.at(-1)?.data).toBe('{"type":"progress"}');
    b.shared.unwatch(job.id);
  });

  it("tells every gateway of a cancel", async () => {
    const [a, b] = gateways(2) as [RedisJobStore, RedisJobStore];
    const canceled: string[] = [];
    b.shared.onCancel((id) => canceled.push(id));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await a.shared.announceCancel("some-job");
    await expect.poll(() => canceled).toEqual(["some-job"]);
  });

  it("takes up a lost gateway's jobs: its queued ones run elsewhere, its running ones fail as gateway_lost", async () => {
    const [a, b] = gateways(2, { leaseTtlMs: 600 }) as [RedisJobStore, RedisJobStore];
    const queued = (await a.create("ip:1", INPUT)).job;
    const running = (await a.create("ip:1", INPUT)).job;
    await a.update(running.id, { status: "running", started_at: new Date().toISOString() });
    expect(await b.recover(new Date()), "a is alive").toEqual({ requeued: [], failed: [] });
    a.close(); // its heartbeat stops, and it lets go of its queued job at once
    stores.splice(stores.indexOf(a), 1);
    const requeued: string[] = [];
    const failed: string[] = [];
    for (const deadline = Date.now() + 3000; (failed.length === 0 || requeued.length === 0) && Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 50))) {
      const taken = await b.recover(new Date());
      requeued.push(...taken.requeued.map((job) => job.id));
      failed.push(...taken.failed.map((job) => job.id));
    }
    expect(failed).toEqual([running.id]);
    expect(requeued).toEqual([queued.id]);
    expect(await b.get(running.id)).toMatchObject({ status: "failed", error: { kind: "gateway_lost" } });
    expect(await b.recover(new Date()), "nothing is taken twice").toEqual({ requeued: [], failed: [] });
    expect(await b.get(queued.id)).toMatchObject({ status: "queued" });
    // A third gateway finds nothing left to take: b has it.
    const [c] = gateways(1, { leaseTtlMs: 600 });
    expect((await c?.recover(new Date()))?.requeued).toEqual([]);
  });

  it("keeps images once, says whose they are, and lets the oldest go past a size", async () => {
    const [a, b] = gateways(2) as [RedisJobStore, RedisJobStore];
    const keep = async (text: string, owner: string) => {
      const bytes = Buffer.from(text);
      const sha256 = createHash("sha256").update(bytes).digest("hex");
      await a.putImage(bytes, "image/png", sha256);
      const { job } = await a.create(owner, INPUT);
      await a.update(job.id, { status: "succeeded", completed_at: new Date().toISOString(), output: { sha256, content_type: "image/png", bytes: bytes.length, width: null, height: null, seed: null, generation_time_ms: null, image_id: null } });
      return sha256;
    };
    const first = await keep("first image", "key:a");
    const second = await keep("second image!", "key:b");
    expect(await b.image(first)).toEqual({ sha256: first, content_type: "image/png", bytes: 11 });
    expect(await b.ownsImage("key:a", first)).toBe(true);
    expect(await b.ownsImage("key:b", first)).toBe(false);
    expect(await b.usage()).toEqual({ images: 2, bytes: 24 });
    expect(await new Response(b.images.read(second, 0, 5)).text()).toBe("second");
    expect(await b.trim(13, 10)).toBe(1);
    expect(await a.image(first)).toBeUndefined();
    expect(await a.usage()).toEqual({ images: 1, bytes: 13 });
  });

  it("lets images kept within the same millisecond go in the order they came, not by hash", async () => {
    const [a] = gateways(1) as [RedisJobStore];
    const kept: string[] = [];
    for (let i = 0; i < 40; i++) {
      const bytes = Buffer.from(`image ${String(i).padStart(2, "0")}`);
      const sha256 = createHash("sha256").update(bytes).digest("hex");
      await a.putImage(bytes, "image/png", sha256);
      kept.push(sha256);
    }
    // Each is 8 bytes: room for the newest five.
    expect(await a.trim(5 * 8, 100)).toBe(35);
    const left = await Promise.all(kept.map(async (sha256) => (await a.image(sha256)) !== undefined));
    expect(left).toEqual(kept.map((_, i) => i >= 35));
  });

  it("sends an image it already keeps to the image store no more (a read of it may be under way), and keeps it as long as if it had", async () => {
    const puts: string[] = [];
    class CountingImages extends FileImageStore {
      override async put(sha256: string, bytes: Buffer): Promise<void> {
        puts.push(sha256);
        await super.put(sha256, bytes);
      }
    }
    const keyPrefix = `test-${randomBytes(4).toString("hex")}:`;
    const images = new CountingImages(path.join(dir, keyPrefix));
    const [a, b] = [0, 1].map(() => new RedisJobStore({ redisUrl: redis.url, images, jobTtlMs: 60_000, leaseTtlMs: 3000, keyPrefix }));
    stores.push(a as RedisJobStore, b as RedisJobStore);
    const bytes = Buffer.from("the same image");
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    await a?.putImage(bytes, "image/png", sha256);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const between = new Date();
    await new Promise((resolve) => setTimeout(resolve, 20));
    await b?.putImage(bytes, "image/png", sha256);
    await a?.putImage(bytes, "image/png", sha256);
    expect(puts).toEqual([sha256]);
    expect(await b?.usage()).toEqual({ images: 1, bytes: bytes.length });
    // Kept again counts as stored again: what expires the images stored before `between` leaves it.
    expect(await a?.expire(between, 10)).toBe(0);
    expect(await b?.image(sha256)).toMatchObject({ sha256 });
  });
});
