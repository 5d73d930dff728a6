import { afterAll, beforeEach, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { call, eventually, postJson, streamGenerate } from "./harness";
import type { Gateway } from "./harness";

const STEPS = 6;
const small = { prompt: "a paper boat", width: 256, height: 256, num_inference_steps: STEPS };

let emulator: Emulator;
let gateway: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  emulator = await startEmulator({ stepMs: 20, slots: 8 });
  gateway = await startFileGateway({
    TEXT2IMAGE_SERVER_URL: emulator.url,
    MAX_CONCURRENT_REQUESTS: "1",
    REQUEST_TIMEOUT: "3",
    SSE_KEEPALIVE_INTERVAL: "0.2",
  });
});

afterAll(() => emulator.close());

beforeEach(() => {
  emulator.reset();
  emulator.setStepMs(20);
});

const idle = async () => {
  const health = (await call(`${gateway.url}/api/health`)).body as { in_flight: number; queued: number };
  return health.in_flight === 0 && health.queued === 0;
};

describe.each([["/api/generate-stream"], ["/generate-stream"]])("POST %s", (path) => {
  it("relays progress events in order, then the complete event, with SSE headers", async () => {
    const { response, events, types } = await streamGenerate(`${gateway.url}${path}`, small);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(response.headers.get("cache-control")).toBe("no-cache, no-transform");
    expect(response.headers.get("x-accel-buffering")).toBe("no");
    // The GPU server's events as it sent them: its queued first, integer percent, the last progress twice.
    expect(types).toEqual(["queued", ...Array<string>(STEPS + 1).fill("progress"), "complete"]);
    expect(events.find((event) => event.data)?.data).toEqual({ type: "queued", queue_position: 1, request_id: expect.any(String) as unknown });
    const progress = events.filter((event) => event.data?.type === "progress").map((event) => [event.data?.step, event.data?.progress]);
    expect(progress).toEqual([[1, 16], [2, 33], [3, 50], [4, 66], [5, 83], [6, 100], [6, 100]]);
    const complete = events.find((event) => event.data?.type === "complete")?.data;
    expect(complete).toMatchObject({ width: 256, height: 256 });
    expect(complete?.image_base64).toMatch(/^data:image\/jpeg;base64,\/9j\//);
    expect(await idle()).toBe(true);
  });

  it("delivers the first progress event while the GPU still works", async () => {
    emulator.setStepMs(300); // 6 steps: the image is ready after 1.8 s
    const { events } = await streamGenerate(`${gateway.url}${path}`, small);
    const firstProgress = events.find((event) => event.data?.type === "progress");
    const complete = events.find((event) => event.data?.type === "complete");
    expect(complete?.at).toBeGreaterThanOrEqual(1800);
    // Buffered somewhere, the first step would arrive with the image.
    expect(firstProgress?.at).toBeLessThan(1000);
    expect((complete?.at ?? 0) - (firstProgress?.at ?? 0)).toBeGreaterThan(1000);
  });
});

describe("admission", () => {
  it("validates exactly as /api/generate, before any stream starts", async () => {
    for (const body of [{ prompt: "" }, { prompt: "x", width: 9999 }]) {
      // One request id for both, so the answers may be equal to the byte.
      const sameId = { headers: { "content-type": "application/json", "x-request-id": "same-id" } };
      const stream = await streamGenerate(`${gateway.url}/api/generate-stream`, body, sameId);
      const plain = await postJson(`${gateway.url}/api/generate`, body, sameId);
      expect(stream.response.status).toBe(422);
      expect(stream.json).toEqual(plain.body);
    }
    expect(emulator.stats().generateRequests).toBe(0);
  });

  it("tells a waiting request its place in line, then streams its generation", async () => {
    emulator.setStepMs(100);
    const first = streamGenerate(`${gateway.url}/api/generate-stream`, small);
    expect(await eventually(() => emulator.stats().active === 1)).toBe(true);
    const second = streamGenerate(`${gateway.url}/api/generate-stream`, small);
    expect(await eventually(async () => !(await idle()) && ((await call(`${gateway.url}/api/health`)).body as { queued: number }).queued === 1)).toBe(true);
    const third = streamGenerate(`${gateway.url}/api/generate-stream`, small);
    const results = await Promise.all([first, second, third]);
    expect(results.map((result) => result.response.status)).toEqual([200, 200, 200]);
    // The first had a slot at once: only the GPU server's queued event. The others waited for the gateway's one slot.
    expect(results[0].events.filter((event) => event.data?.type === "queued").map((event) => event.data)).toEqual([
      { type: "queued", queue_position: 1, request_id: expect.any(String) as unknown },
    ]);
    expect(results[1].events.find((event) => event.data)?.data).toEqual({ type: "queued", queue_position: 1, position: 1 });
    const gatewayQueued = (index: number) =>
      results[index]?.events.filter((event) => event.data?.type === "queued" && !event.data.request_id).map((event) => event.data?.queue_position);
    expect(gatewayQueued(2)).toEqual([2, 1]);
    for (const result of results) expect(result.types.at(-1)).toBe("complete");
    expect(emulator.stats().maxConcurrent).toBe(1);
  });

  it("reports a failure after queueing as a final error event", async () => {
    emulator.setStepMs(100);
    const first = streamGenerate(`${gateway.url}/api/generate-stream`, small);
    expect(await eventually(() => emulator.stats().active === 1)).toBe(true);
    const second = streamGenerate(`${gateway.url}/api/generate-stream`, { ...small, prompt: "doomed [[fault:status:500]]" });
    const [, failed] = await Promise.all([first, second]);
    expect(failed.response.status).toBe(200);
    expect(failed.types).toEqual(["queued", "error"]); // the gateway's queued event, then the GPU server's 500
    expect(failed.events.at(-1)?.data).toEqual({ type: "error", kind: "upstream_status", message: "Text-to-image server error: Internal Server Error" });
  });
});

describe("an idle stream", () => {
  it("gets a keep-alive comment every SSE_KEEPALIVE_INTERVAL", async () => {
    emulator.setStepMs(400);
    const { events } = await streamGenerate(`${gateway.url}/api/generate-stream`, small);
    const comments = events.filter((event) => event.comment === "keep-alive");
    // 2.4 s of generation at one comment per 0.2 s: about 12.
    expect(comments.length).toBeGreaterThanOrEqual(6);
    expect(events.at(-1)?.data?.type).toBe("complete");
  });
});

describe("after the tests above", () => {
  it("the server never crashed", () => {
    expect(gateway.output()).not.toMatch(/uncaughtException|unhandledRejection|Invalid state/);
    expect(gateway.process.exitCode).toBeNull();
  });
});
