/**
 * The gateway in front of a server that speaks as the genuine
 * text2image_server.py does (the emulator's defaults: a queued event first,
 * integer-percent progress with the last event twice, JPEG, a generation run
 * to its end when its client leaves, one generation at a time): the original
 * frontend's three calls, the GPU kept within MAX_CONCURRENT_REQUESTS through
 * an abort storm, and health that says when the server cannot generate.
 */
import { afterAll, beforeEach, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { call, eventually, expectCleanOutput, postJson, streamGenerate, waitIdle } from "./harness";
import type { Gateway } from "./harness";

const MAX_CONCURRENT = 2;
let emulator: Emulator;
let gateway: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  // One generation at a time, as the genuine server's single worker runs them.
  emulator = await startEmulator({ stepMs: 20, slots: 1, maxQueue: 20 });
  gateway = await startFileGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, MAX_CONCURRENT_REQUESTS: String(MAX_CONCURRENT), REQUEST_TIMEOUT: "20", HEALTH_REUSE: "0.001" });
});

afterAll(() => emulator.close());

beforeEach(() => {
  emulator.reset();
});

interface FrontendRequest {
  prompt: string;
  negative_prompt?: string;
  height?: number;
  width?: number;
  seed?: number;
  num_inference_steps?: number;
  guidance_scale?: number;
}

/** The body the original frontend (frontend/lib/api.ts) sends: every field, its defaults filled. */
function frontendBody(request: FrontendRequest): string {
  return JSON.stringify({
    prompt: request.prompt,
    negative_prompt: request.negative_prompt ?? "",
    height: request.height ?? 1024,
    width: request.width ?? 1024,
    seed: request.seed ?? -1,
    num_inference_steps: request.num_inference_steps ?? 9,
    guidance_scale: request.guidance_scale ?? 0.0,
  });
}

/** The original frontend's checkHealth(): up when any of its three conditions holds. */
async function checkHealth(base: string): Promise<boolean> {
  const response = await fetch(`${base}/health`, { headers: { "Content-Type": "application/json" } });
  if (!response.ok) return false;
  const data = (await response.json()) as { status?: string; gateway?: string; text2image_server?: { status?: string; model_loaded?: boolean; cuda_available?: boolean } };
  const server = data.text2image_server;
  return data.status === "healthy" || (data.gateway === "running" && (server?.status === "healthy" || (server?.model_loaded === true && server.cuda_available === true)));
}

/**
 * The original frontend's generateImageStream(): reads `data: ` lines, hands
 * every event to the progress callback, resolves on `complete` and rejects on
 * `error` (and, as it does, never settles on a stream that just ends: here
 * that is a rejection, so a test can see it).
 */
async function generateImageStream(base: string, request: FrontendRequest, onProgress: (event: Record<string, unknown>) => void) {
  const response = await fetch(`${base}/generate-stream`, { method: "POST", headers: { "Content-Type": "application/json" }, body: frontendBody(request) });
  if (!response.ok || !response.body) throw new Error(`HTTP error! status: ${response.status}`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) throw new Error("the stream ended with neither complete nor error");
    buffer += decoder.decode(value, { stream: true });
    const lines = buffer.split("\n");
    buffer = lines.pop() ?? "";
    for (const line of lines) {
      if (!line.startsWith("data: ")) continue;
      const data = JSON.parse(line.slice(6)) as Record<string, unknown>;
      onProgress(data);
      if (data.type === "complete") {
        await reader.cancel();
        return data;
      }
      if (data.type === "error") throw new Error(String(data.message));
    }
  }
}

describe("the original frontend's three calls, through the gateway's original paths", () => {
  it("checkHealth() says up", async () => {
    expect(await checkHealth(gateway.url)).toBe(true);
  });

  it("generateImage() gets the image and its fields", async () => {
    const response = await fetch(`${gateway.url}/generate`, { method: "POST", headers: { "Content-Type": "application/json" }, body: frontendBody({ prompt: "a fox", width: 256, height: 256, num_inference_steps: 6, seed: 5 }) });
    expect(response.status).toBe(200);
    const body = (await response.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ seed: 5, width: 256, height: 256, image_id: null });
    expect(body.image_base64).toMatch(/^data:image\/jpeg;base64,\/9j\//);
    expect(typeof body.generation_time_ms).toBe("number");
  });

  it("generateImageStream() hears every event the server sent and resolves with the image", async () => {
    const heard: Record<string, unknown>[] = [];
    const complete = await generateImageStream(gateway.url, { prompt: "a fox", width: 256, height: 256, num_inference_steps: 6 }, (event) => heard.push(event));
    expect(complete).toMatchObject({ type: "complete", width: 256, height: 256 });
    expect(heard[0]).toEqual({ type: "queued", queue_position: 1, request_id: expect.any(String) as unknown });
    expect(heard.filter((event) => event.type === "progress").map((event) => event.progress)).toEqual([16, 33, 50, 66, 83, 100, 100]);
  });

  it("generateImageStream() rejects, rather than hanging, when the server ends its stream with no final event", async () => {
    const heard: Record<string, unknown>[] = [];
    // The genuine server's way to fail a streamed generation: it just stops.
    const failure = generateImageStream(gateway.url, { prompt: "[[fault:stream_end]]", width: 256, height: 256, num_inference_steps: 6 }, (event) => heard.push(event));
    await expect(failure).rejects.toThrow("Text-to-image server sent an invalid response: the stream ended before the image was complete");
  });
});

describe("health says when the server cannot generate", () => {
  it.each<[string, { cudaAvailable?: boolean; modelLoaded?: boolean }]>([
    ["cuda_available false", { cudaAvailable: false }],
    ["model_loaded false", { modelLoaded: false }],
  ])("%s: degraded, the server's fields passed on", async (_, device) => {
    emulator.setDevice(device); // seen at once: HEALTH_REUSE is near 0
    const health = (await call(`${gateway.url}/api/health`)).body as { status: string; text2image_server: Record<string, unknown> };
    expect(health.status).toBe("degraded");
    expect(health.text2image_server).toMatchObject({ status: "healthy", cuda_device: device.cudaAvailable === false ? null : "Emulated GPU" });
    // (The original frontend's checkHealth() still says up: it trusts text2image_server.status, which the genuine server keeps "healthy".)
    emulator.setDevice({ cudaAvailable: true, modelLoaded: true });
  });
});

describe("a GPU server that runs every generation to its end", () => {
  it("an abort storm never has it run or queue more than MAX_CONCURRENT_REQUESTS, and no slot is lost", async () => {
    const body = { prompt: "storm", width: 256, height: 256, num_inference_steps: 6 }; // 120 ms each
    // 16 clients over about 1.3 s, each gone 20–200 ms after it asked: orphans pile up while slots free and fill again.
    const clients = Array.from({ length: 16 }, async (_, i) => {
      await new Promise((resolve) => setTimeout(resolve, i * 80));
      const client = new AbortController();
      const path = i % 2 === 0 ? "/api/generate" : "/api/generate-stream";
      setTimeout(() => {
        client.abort();
      }, 20 + ((i * 37) % 180));
      await fetch(`${gateway.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: client.signal })
        .then((response) => response.arrayBuffer())
        .catch(() => undefined);
    });
    await Promise.all(clients);
    // The gateway shows the orphans it still holds; the server works them off one by one.
    const health = (await call(`${gateway.url}/api/health`)).body as { in_flight: number; orphaned: number };
    expect(health.in_flight).toBeLessThanOrEqual(MAX_CONCURRENT);
    expect(await waitIdle(gateway.url, 15_000), "every slot back").toBe(true);
    expect(await eventually(() => emulator.stats().work === 0, 5000)).toBe(true);
    expect(emulator.stats().maxWork, "the most the GPU server ever had to run or queue").toBeLessThanOrEqual(MAX_CONCURRENT);
    expect(emulator.stats().generateRequests).toBeGreaterThan(MAX_CONCURRENT); // slots were freed and used again

    const after = await postJson(`${gateway.url}/api/generate`, body);
    expect(after.status).toBe(200);
    expect(((await call(`${gateway.url}/api/health`)).body as { orphaned: number }).orphaned).toBe(0);
    expectCleanOutput(gateway);
  });

  it("shows orphaned generations in /api/health and the metrics while the server still runs them", async () => {
    emulator.setStepMs(100);
    const client = new AbortController();
    const pending = streamGenerate(`${gateway.url}/api/generate-stream`, { prompt: "orphan", width: 256, height: 256, num_inference_steps: 12 }, { signal: client.signal }).catch(() => undefined);
    expect(await eventually(() => emulator.stats().work === 1)).toBe(true);
    client.abort();
    await pending;
    expect(
      await eventually(async () => ((await call(`${gateway.url}/api/health`)).body as { orphaned: number }).orphaned === 1),
      "an orphan in /api/health",
    ).toBe(true);
    const metrics = await (await fetch(`${gateway.url}/api/metrics/gateway`)).text();
    expect(metrics).toMatch(/^gateway_orphaned 1$/m);
    expect(emulator.stats().work).toBe(1);
    expect(await waitIdle(gateway.url, 5000)).toBe(true);
    expect(emulator.stats().work).toBe(0);
    emulator.setStepMs(20);
  });
});

describe("bad input never reaches the GPU server", () => {
  it.each([
    [{ prompt: "x", seed: -2 }, "greater_than_equal"],
    [{ prompt: "x", width: 1000 }, "multiple_of"],
    [{ prompt: "x", guidance_scale: "inf" }, "finite_number"],
  ])("%j: 422 with FastAPI's list", async (body, type) => {
    const answer = await postJson(`${gateway.url}/generate`, body);
    expect(answer.status).toBe(422);
    expect((answer.body as { detail: { type: string }[] }).detail.map((entry) => entry.type)).toEqual([type]);
    expect(emulator.stats().generateRequests).toBe(0);
  });
});
