import { afterAll, beforeEach, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { fail } from "@/lib/errors";
import { it } from "./fixtures";
import { call } from "./harness";
import type { Gateway } from "./harness";

const REQUEST_TIMEOUT_S = 1;
const MAX_RESPONSE_BYTES = 200_000;

let emulator: Emulator;
let gateway: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  emulator = await startEmulator({ stepMs: 1 });
  gateway = await startFileGateway({
    TEXT2IMAGE_SERVER_URL: emulator.url,
    REQUEST_TIMEOUT: String(REQUEST_TIMEOUT_S),
    MAX_RESPONSE_BYTES: String(MAX_RESPONSE_BYTES),
    MAX_CONCURRENT_REQUESTS: "4",
    HEALTH_REUSE: "0.001", // near 0: a health answer is not reused, so a test sees its fault at once
  });
});

afterAll(() => emulator.close());

beforeEach(() => {
  emulator.reset();
});

describe("upstream health problems", () => {
  it("reports an upstream error status as error_<code>, still 200 and degraded", async () => {
    emulator.setFault({ kind: "status", status: 500, detail: "boom", target: "health" });
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
    expect(answer.body).toMatchObject({ detail: fail.metricsUnavailable(fail.upstreamBadResponse("body is not JSON")).detail });
  });
});
