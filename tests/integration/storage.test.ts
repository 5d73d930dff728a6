/**
 * A full disk, for real: DATA_DIR on a small tmpfs of its own (mounted here:
 * the tests run as root, as CI does), filled by images until a write fails
 * with ENOSPC.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { call, eventually } from "./harness";

let emulator: Emulator;
let mountPoint: string;

beforeAll(async () => {
  // Noise PNGs of 1024x1024 barely compress: about 1.1 MB each.
  emulator = await startEmulator({ stepMs: 1, image: "noise", imageFormat: "png" });
  mountPoint = mkdtempSync(path.join(tmpdir(), "full-disk-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=12m", "tmpfs", mountPoint]);
  } catch (error) {
    throw new Error(`this test needs a small file system of its own: mounting a tmpfs failed (run as root): ${String(error)}`);
  }
});

afterAll(async () => {
  await emulator.close();
  execFileSync("umount", [mountPoint]);
  rmSync(mountPoint, { recursive: true, force: true });
});

interface JobAnswer {
  id: string;
  status: string;
  error: { kind: string; detail: string } | null;
}

describe("a full disk under DATA_DIR", () => {
  // The gateway stops when the test ends, before afterAll unmounts its DATA_DIR.
  it("fails the job whose image finds no room with storage_full, leaves no partial file, says degraded, refuses new jobs until there is room", async ({ startGateway }) => {
    const gateway = await startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, DATA_DIR: path.join(mountPoint, "data") });
    const submit = (seed: number) =>
      call(`${gateway.url}/api/jobs`, {
        method: "POST",
        headers: { "content-type": "application/json", prefer: "wait=30" },
        body: JSON.stringify({ prompt: "noise", width: 1024, height: 1024, num_inference_steps: 6, seed }),
      });
    // Ballast: what else fills the disk (logs, other files), freed later.
    const ballast = path.join(mountPoint, "ballast");
    writeFileSync(ballast, Buffer.alloc(9 * 1024 * 1024, 1));
    const answers: JobAnswer[] = [];
    for (let seed = 1; seed <= 8; seed++) {
      const answer = await submit(seed);
      answers.push(answer.body as JobAnswer);
      if ((answer.body as JobAnswer).status === "failed") break;
    }
    const failed = answers.at(-1);
    expect(answers.length, "some images were kept before the disk filled").toBeGreaterThan(1);
    expect(answers.slice(0, -1).every((job) => job.status === "succeeded")).toBe(true);
    expect(failed).toMatchObject({ status: "failed", error: { kind: "storage_full" } });
    expect(failed?.error?.detail).toMatch(/disk of DATA_DIR is full/);
    expect(readdirSync(path.join(mountPoint, "data", "images")).filter((name) => name.endsWith(".partial"))).toEqual([]);

    const health = (await call(`${gateway.url}/api/health`)).body as { status: string; storage_full?: boolean };
    expect(health).toMatchObject({ status: "degraded", storage_full: true });
    const refused = await submit(10);
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
    expect((refused.body as { detail: string }).detail).toMatch(/^The gateway has no room to keep images/);

    // Room again: new jobs are taken, and health says so.
    rmSync(ballast);
    expect(await eventually(async () => (await submit(11)).status === 200, 5000)).toBe(true);
    expect(((await call(`${gateway.url}/api/health`)).body as { storage_full?: boolean }).storage_full).toBeUndefined();
    expect(gateway.output()).not.toMatch(/unhandledRejection|uncaughtException/);
  });
});
