import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator, Fault } from "../../emulator/server";
import { call, freePort, postJson, startGateway } from "./harness";
import type { Gateway } from "./harness";

const REQUEST_TIMEOUT_S = 1;
const MAX_RESPONSE_BYTES = 200_000;
const small = { prompt: "a lighthouse", width: 256, height: 256 };

let emulator: Emulator;
let gateway: Gateway;

beforeAll(async () => {
  emulator = await startEmulator({ stepMs: 1 });
  gateway = await startGateway({
    TEXT2IMAGE_SERVER_URL: emulator.url,
    REQUEST_TIMEOUT: String(REQUEST_TIMEOUT_S),
    MAX_RESPONSE_BYTES: String(MAX_RESPONSE_BYTES),
    MAX_CONCURRENT_REQUESTS: "4",
  });
});

afterAll(async () => {
  await gateway.stop();
  await emulator.close();
});

beforeEach(() => {
  emulator.reset();
});

async function gatewayLoad() {
  const health = (await call(`${gateway.url}/api/health`)).body as { in_flight: number; queued: number };
  return { in_flight: health.in_flight, queued: health.queued };
}

describe("upstream failures map through the error table", () => {
  it.each<[string, Fault, number, string | RegExp]>([
    ["503 keeps its detail", { kind: "status", status: 503, detail: "Queue is full" }, 503, "Queue is full"],
    ["504 stays 504", { kind: "status", status: 504, detail: "Generation timed out" }, 504, "Generation timed out"],
    ["500 is relayed with a prefix", { kind: "status", status: 500, detail: "CUDA error" }, 500, "Text-to-image server error: CUDA error"],
    ["429 is relayed with a prefix", { kind: "status", status: 429, detail: "slow down" }, 429, "Text-to-image server error: slow down"],
    ["a 200 that is not JSON is a 502", { kind: "malformed_json" }, 502, "Text-to-image server sent an invalid response: body is not JSON"],
    ["a 200 without image_base64 is a 502", { kind: "missing_image" }, 502, "Text-to-image server sent an invalid response: no image_base64 in the answer"],
    ["a reset before headers is a 502", { kind: "reset_before_headers" }, 502, "Connection to the text-to-image server was lost"],
    ["a reset mid-body is a 502", { kind: "reset_mid_body" }, 502, "Connection to the text-to-image server was lost"],
    ["headers slower than REQUEST_TIMEOUT are a 504", { kind: "stall_headers" }, 504, `Text-to-image server did not answer within ${REQUEST_TIMEOUT_S} s (REQUEST_TIMEOUT)`],
    ["a stalled body is a 504", { kind: "stall_body" }, 504, `Text-to-image server did not answer within ${REQUEST_TIMEOUT_S} s (REQUEST_TIMEOUT)`],
    ["a body over MAX_RESPONSE_BYTES is a 502", { kind: "oversize", bytes: MAX_RESPONSE_BYTES * 3 }, 502, `Text-to-image server response is larger than ${MAX_RESPONSE_BYTES} bytes (MAX_RESPONSE_BYTES)`],
  ])("%s", async (_name, fault, status, detail) => {
    emulator.setFault(fault);
    const answer = await postJson(`${gateway.url}/api/generate`, small);
    expect(answer.status).toBe(status);
    expect(answer.headers.get("content-type")).toMatch(/^application\/json/);
    expect((answer.body as { detail: unknown }).detail).toEqual(detail);
    expect(await gatewayLoad()).toEqual({ in_flight: 0, queued: 0 });
    // The gateway keeps serving after each fault.
    emulator.setFault(null);
    expect((await postJson(`${gateway.url}/api/generate`, small)).status).toBe(200);
  });

  it("stops waiting at REQUEST_TIMEOUT, not later", async () => {
    emulator.setFault({ kind: "stall_headers" });
    const started = performance.now();
    const answer = await postJson(`${gateway.url}/api/generate`, small);
    const elapsed = performance.now() - started;
    expect(answer.status).toBe(504);
    expect(elapsed).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_S * 1000 - 50);
    expect(elapsed).toBeLessThan(REQUEST_TIMEOUT_S * 1000 + 3000);
  });
});

describe("an unreachable GPU server", () => {
  it("answers 503 naming the server when the connection is refused", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const down = await startGateway({ TEXT2IMAGE_SERVER_URL: url });
    try {
      const answer = await postJson(`${down.url}/api/generate`, small);
      expect(answer).toMatchObject({ status: 503, body: { detail: `Text-to-image server ${url} is unreachable: connection refused` } });
      const health = await call(`${down.url}/api/health`);
      expect(health).toMatchObject({ status: 200, body: { status: "degraded", gateway: "running", text2image_server: { status: "unreachable" } } });
      const metrics = await call(`${down.url}/api/metrics`);
      expect(metrics.status).toBe(502);
      expect((metrics.body as { detail: string }).detail).toContain("connection refused");
    } finally {
      await down.stop();
    }
  });

  it("answers 503 naming the server when its name does not resolve", async () => {
    const down = await startGateway({ TEXT2IMAGE_SERVER_URL: "http://gpu-box.invalid:8001" });
    try {
      const answer = await postJson(`${down.url}/api/generate`, small);
      expect(answer).toMatchObject({
        status: 503,
        body: { detail: "Text-to-image server http://gpu-box.invalid:8001 is unreachable: host name not found" },
      });
    } finally {
      await down.stop();
    }
  });
});

describe("upstream health problems", () => {
  it("reports an upstream error status as error_<code>, still 200 and degraded", async () => {
    emulator.setFault({ kind: "status", status: 500, detail: "boom", target: "health" });
    await new Promise((resolve) => setTimeout(resolve, 1100)); // past the coalescing window
    const answer = await call(`${gateway.url}/api/health`);
    expect(answer).toMatchObject({
      status: 200,
      body: { status: "degraded", text2image_server: { status: "error_500", error: "Text-to-image server error: boom" } },
    });
  });

  it("answers 502 for metrics the server cannot give", async () => {
    emulator.setFault({ kind: "malformed_json", target: "metrics" });
    const answer = await call(`${gateway.url}/api/metrics`);
    expect(answer.status).toBe(502);
    expect((answer.body as { detail: string }).detail).toMatch(/^Could not fetch the text-to-image server's metrics: /);
  });
});
