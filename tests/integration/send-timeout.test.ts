/**
 * SEND_TIMEOUT: a client that stops reading its answer must not hold it in
 * the gateway's memory for ever; one that is merely waiting for a slow
 * generation, with nothing unsent, is left alone.
 */
import { connect } from "node:net";
import { afterAll, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { expectIdleAndServing, postJson } from "./harness";
import type { Gateway } from "./harness";

const SEND_TIMEOUT_S = 1;
// A noisy 2048² PNG: about 17 MB of JSON, more than loopback's socket buffers hold.
const big = { prompt: "a field of static", width: 2048, height: 2048, num_inference_steps: 6, seed: 7 };

let emulator: Emulator;
let gateway: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  emulator = await startEmulator({ stepMs: 1, image: "noise", imageFormat: "png", slots: 8 });
  gateway = await startFileGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, SEND_TIMEOUT: String(SEND_TIMEOUT_S), MAX_CONCURRENT_REQUESTS: "8" });
});

afterAll(() => emulator.close());

/**
 * Sends a request, reads nothing for `pauseMs`, then reads what is left:
 * whether the connection was reset meanwhile, and how many bytes came.
 */
async function pauseThenRead(path: string, body: unknown, pauseMs: number): Promise<{ reset: boolean; bytes: number; ended: boolean }> {
  const { port } = new URL(gateway.url);
  const socket = connect(Number(port), "127.0.0.1");
  const json = JSON.stringify(body);
  socket.pause();
  socket.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\nConnection: close\r\n\r\n${json}`);
  await new Promise((resolve) => setTimeout(resolve, pauseMs));
  return new Promise((resolve) => {
    let bytes = 0;
    let reset = false;
    socket.on("data", (chunk: Buffer) => (bytes += chunk.length));
    socket.on("error", (error: NodeJS.ErrnoException) => {
      reset = error.code === "ECONNRESET";
    });
    socket.on("close", () => {
      resolve({ reset, bytes, ended: !reset });
    });
    socket.resume();
  });
}

describe("a client that stops reading (SEND_TIMEOUT)", () => {
  it.each(["/api/generate", "/api/generate-stream"])("on %s is cut once nothing was taken for SEND_TIMEOUT, and the gateway is idle after", async (path) => {
    const cut = await Promise.all(Array.from({ length: 3 }, () => pauseThenRead(path, big, SEND_TIMEOUT_S * 1000 + 3000)));
    for (const client of cut) expect(client.reset).toBe(true);
    // The same request read at once gets its whole answer: the cut is the timeout's, not the size's.
    const whole = await pauseThenRead(path, big, 0);
    expect(whole).toMatchObject({ reset: false, ended: true });
    expect(whole.bytes).toBeGreaterThan(5_000_000);
    await expectIdleAndServing(gateway, {
      emulator,
      probe: async () => {
        expect((await postJson(`${gateway.url}/api/generate`, { prompt: "after", width: 256, height: 256, num_inference_steps: 6 })).status).toBe(200);
      },
    });
  });

  it("leaves alone a client waiting for a generation slower than SEND_TIMEOUT", async () => {
    emulator.setStepMs(400);
    try {
      const answer = await postJson(`${gateway.url}/api/generate`, { prompt: "slow", width: 256, height: 256, num_inference_steps: 6 });
      expect(answer.status).toBe(200);
    } finally {
      emulator.setStepMs(1);
    }
  });
});
