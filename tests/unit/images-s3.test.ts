/** Jobs' images in an S3-compatible bucket (IMAGE_STORE=s3), through the AWS SDK, against a real S3-protocol server (s3rver). */
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { S3ImageStore, checkWritable } from "@/lib/jobs/images";
import { SqliteJobStore } from "@/lib/jobs/store";
import { startS3Server } from "../s3-server";
import type { S3Server } from "../s3-server";

let s3: S3Server;
let images: S3ImageStore;

beforeAll(async () => {
  s3 = await startS3Server();
  for (const [name, value] of Object.entries(s3.env)) process.env[name] = value;
  images = new S3ImageStore({ bucket: s3.bucket, prefix: "jobs/", endpoint: s3.endpoint, forcePathStyle: true });
});

afterAll(async () => {
  images.close();
  await s3.close();
});

const text = (stream: ReadableStream<Uint8Array>) => new Response(stream).text();

describe("S3ImageStore", () => {
  it("puts an image under its prefix and hash, reads any part of it, and removes it", async () => {
    await images.put("a".repeat(64), Buffer.from("the bytes of an image"), "image/jpeg");
    expect(await s3.keys()).toContain(`jobs/${"a".repeat(64)}`);
    expect(await text(images.read("a".repeat(64), 0, 20))).toBe("the bytes of an image");
    expect(await text(images.read("a".repeat(64), 4, 8))).toBe("bytes");
    await images.remove("a".repeat(64));
    expect(await s3.keys()).not.toContain(`jobs/${"a".repeat(64)}`);
    await images.remove("a".repeat(64)); // already gone: no error
  });

  it("asks nothing of the bucket until the body is read, and errors the body for an image that is not there", async () => {
    const stream = images.read("b".repeat(64), 0, 10);
    await expect(text(stream)).rejects.toThrow();
  });

  it("checks at start that it can write and remove, and says why not", async () => {
    await expect(checkWritable(images)).resolves.toBeUndefined();
    const missing = new S3ImageStore({ bucket: "no-such-bucket", prefix: "", endpoint: s3.endpoint, forcePathStyle: true });
    await expect(checkWritable(missing)).rejects.toMatchObject({ name: "NoSuchBucket" });
    missing.close();
  });

  it("keeps a job store's images in the bucket: written once, gone with the last job that has them", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "jobs-s3-"));
    const store = new SqliteJobStore(dir, images);
    try {
      const bytes = Buffer.from("an image kept in a bucket");
      const sha256 = createHash("sha256").update(bytes).digest("hex");
      await store.putImage(bytes, "image/png", sha256);
      const { job } = await store.create("ip:1", '{"prompt":"x"}');
      await store.update(job.id, { status: "succeeded", completed_at: "2026-12-01T00:00:00.000Z", output: { sha256, content_type: "image/png", bytes: bytes.length, width: null, height: null, seed: null, generation_time_ms: null, image_id: null } });
      expect(await s3.keys()).toContain(`jobs/${sha256}`);
      expect(readdirSync(dir).filter((name) => name === "images")).toEqual([]);
      expect(await text(store.images.read(sha256, 0, bytes.length - 1))).toBe("an image kept in a bucket");
      expect(await store.expire(new Date("2026-12-02T00:00:00.000Z"), 10)).toBe(1);
      await expect.poll(async () => (await s3.keys()).includes(`jobs/${sha256}`)).toBe(false);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
