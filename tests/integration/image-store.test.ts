/** Jobs' images in an S3-compatible bucket (IMAGE_STORE=s3): a real S3-protocol server (s3rver), the built gateway, the emulator. */
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { freePort } from "../proc";
import { startS3Server } from "../s3-server";
import type { S3Server } from "../s3-server";
import { it } from "./fixtures";
import type { StartGateway } from "./fixtures";
import { call, directImage } from "./harness";

let emulator: Emulator;
let s3: S3Server;

beforeAll(async () => {
  [emulator, s3] = await Promise.all([startEmulator({ stepMs: 1 }), startS3Server()]);
});

afterAll(() => Promise.all([emulator.close(), s3.close()]));

/** How a start that must fail failed: the harness's error, with what the gateway printed. */
function startFailure(startGateway: StartGateway, env: Record<string, string>): Promise<string> {
  return startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, ...env }).then(
    () => "started",
    (error: unknown) => String(error),
  );
}

describe("IMAGE_STORE=s3", () => {
  it("keeps a job's image in the bucket, not under DATA_DIR, and serves it from there byte for byte, with Range", async ({ startGateway }) => {
    const gateway = await startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, ...s3.env, S3_PREFIX: "gateway/" });
    const body = { prompt: "a bucket of foxes", width: 256, height: 256, num_inference_steps: 6, seed: 7 };
    const job = (await call(`${gateway.url}/api/jobs`, { method: "POST", headers: { "content-type": "application/json", prefer: "wait=30" }, body: JSON.stringify(body) })).body as {
      status: string;
      output: { image_url: string; sha256: string; bytes: number };
    };
    expect(job.status).toBe("succeeded");
    expect(await s3.keys()).toContain(`gateway/${job.output.sha256}`);
    const image = await fetch(`${gateway.url}${job.output.image_url}`);
    const bytes = Buffer.from(await image.arrayBuffer());
    expect(image.headers.get("content-length")).toBe(String(job.output.bytes));
    expect(`data:image/jpeg;base64,${bytes.toString("base64")}`).toBe(await directImage(emulator.url, { ...body, negative_prompt: "", guidance_scale: 0 }));
    const part = await fetch(`${gateway.url}${job.output.image_url}`, { headers: { range: "bytes=10-19" } });
    expect([part.status, part.headers.get("content-range")]).toEqual([206, `bytes 10-19/${job.output.bytes}`]);
    expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(10, 20))).toBe(true);
    expect(readdirSync(gateway.dataDir), "only the records under DATA_DIR").not.toContain("images");
    expect(existsSync(path.join(gateway.dataDir, "jobs.db"))).toBe(true);
  });

  it("stops the start naming S3_BUCKET when it is missing", async ({ startGateway }) => {
    const failure = await startFailure(startGateway, { IMAGE_STORE: "s3" });
    expect(failure).toMatch(/gateway exited with 1/);
    expect(failure).toContain("S3_BUCKET=\"\": is required with IMAGE_STORE=s3");
  });

  it("stops the start naming IMAGE_STORE when it is unknown", async ({ startGateway }) => {
    expect(await startFailure(startGateway, { IMAGE_STORE: "floppy" })).toMatch(/IMAGE_STORE="floppy": must be file or s3/);
  });

  it("stops the start naming the bucket and S3_ENDPOINT when the store cannot be reached, and never prints a credential", async ({ startGateway }) => {
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    const failure = await startFailure(startGateway, { ...s3.env, S3_ENDPOINT: nowhere, AWS_SECRET_ACCESS_KEY: "a-secret-never-shown-1234" });
    expect(failure).toContain(`IMAGE_STORE=s3 with S3_BUCKET=${s3.bucket} at S3_ENDPOINT=${nowhere} cannot hold jobs`);
    expect(failure).not.toContain("a-secret-never-shown-1234");
  });

  it("stops the start naming REDIS_URL when the job store's Redis cannot be reached, and never prints its password", async ({ startGateway }) => {
    const failure = await startFailure(startGateway, { ...s3.env, REDIS_URL: `redis://:a-redis-password-never-shown@127.0.0.1:${await freePort()}` });
    expect(failure).toMatch(/gateway exited with 1/);
    expect(failure).toContain("JOB_STORE=redis (on REDIS_URL)");
    expect(failure).toContain("cannot hold jobs");
    expect(failure).not.toContain("a-redis-password-never-shown");
  });
});
