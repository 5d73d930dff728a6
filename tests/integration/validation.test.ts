import { request as httpRequest } from "node:http";
import { afterAll, afterEach, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { call, postJson } from "./harness";
import type { Gateway } from "./harness";

const MAX_BODY_BYTES = 4096;
let emulator: Emulator;
let gateway: Gateway;
let generate: string;

it.beforeAll(async ({ startFileGateway }) => {
  emulator = await startEmulator({ stepMs: 1 });
  gateway = await startFileGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, MAX_BODY_BYTES: String(MAX_BODY_BYTES) });
  generate = `${gateway.url}/api/generate`;
});

afterAll(() => emulator.close());

afterEach(({ task }) => {
  const reached = emulator.stats().generateRequests;
  emulator.reset();
  // Bad input must never reach the GPU server.
  if (!task.name.startsWith("accepts")) expect(reached).toBe(0);
});

describe("schema violations answer 422 in FastAPI's shape", () => {
  it.each([
    [{}, "prompt", "missing"],
    [{ prompt: "" }, "prompt", "string_too_short"],
    [{ prompt: "p".repeat(2001) }, "prompt", "string_too_long"],
    [{ prompt: ["a"] }, "prompt", "string_type"],
    [{ prompt: "x", negative_prompt: "n".repeat(2001) }, "negative_prompt", "string_too_long"],
    [{ prompt: "x", negative_prompt: 3 }, "negative_prompt", "string_type"],
    [{ prompt: "x", height: 255 }, "height", "greater_than_equal"],
    [{ prompt: "x", height: 2049 }, "height", "less_than_equal"],
    [{ prompt: "x", height: 300.5 }, "height", "int_from_float"],
    [{ prompt: "x", width: 100 }, "width", "greater_than_equal"],
    [{ prompt: "x", width: 4096 }, "width", "less_than_equal"],
    [{ prompt: "x", width: "512.5" }, "width", "int_parsing"],
    [{ prompt: "x", width: 1000 }, "width", "multiple_of"],
    [{ prompt: "x", seed: 0.25 }, "seed", "int_from_float"],
    [{ prompt: "x", seed: "random" }, "seed", "int_parsing"],
    [{ prompt: "x", seed: -2 }, "seed", "greater_than_equal"],
    [{ prompt: "x", seed: "18446744073709551616" }, "seed", "less_than_equal"],
    [{ prompt: "x", num_inference_steps: 5 }, "num_inference_steps", "greater_than_equal"],
    [{ prompt: "x", num_inference_steps: 13 }, "num_inference_steps", "less_than_equal"],
    [{ prompt: "x", num_inference_steps: 7.5 }, "num_inference_steps", "int_from_float"],
    [{ prompt: "x", guidance_scale: "abc" }, "guidance_scale", "float_parsing"],
    [{ prompt: "x", guidance_scale: null }, "guidance_scale", "float_type"],
  ])("%j → 422 at body.%s (%s)", async (body, field, type) => {
    const answer = await postJson(generate, body);
    expect(answer.status).toBe(422);
    const { detail } = answer.body as { detail: Record<string, unknown>[] };
    expect(detail).toHaveLength(1);
    // pydantic 2's entry: the refused input always, the rule's bound where there is one.
    expect(Object.keys(detail[0] ?? {})).toEqual(["type", "loc", "msg", "input", ...(/than|multiple|too_/.test(type) ? ["ctx"] : [])]);
    expect(detail[0]).toMatchObject({ type, loc: ["body", field], msg: expect.any(String) as unknown });
    expect(detail[0]?.input).toEqual(type === "missing" ? body : (body as Record<string, unknown>)[field]);
  });
});

describe("pydantic's lax mode, as the genuine server reads a body", () => {
  it("accepts numeric strings and integral floats, and forwards the plain values", async () => {
    const answer = await postJson(generate, { prompt: "lax", width: "512", height: 256.0, num_inference_steps: " 6 ", guidance_scale: "2.5", seed: "7" });
    expect(answer.status).toBe(200);
    expect(emulator.stats().lastBodies.at(-1)).toEqual({ prompt: "lax", negative_prompt: "", width: 512, height: 256, seed: 7, num_inference_steps: 6, guidance_scale: 2.5 });
  });

  it("accepts a seed past 2^53 and sends its digits upstream, which the server echoes", async () => {
    const raw = '{"prompt": "big seed", "width": 256, "height": 256, "num_inference_steps": 6, "seed": 18446744073709551615}';
    const answer = await call(generate, { method: "POST", headers: { "content-type": "application/json" }, body: raw });
    expect(answer.status).toBe(200);
    const text = await (await fetch(generate, { method: "POST", headers: { "content-type": "application/json" }, body: raw })).text();
    expect(text).toContain('"seed":18446744073709551615,');
  });
});

describe("malformed requests", () => {
  it("answers 400 for malformed JSON", async () => {
    const answer = await call(generate, { method: "POST", headers: { "content-type": "application/json" }, body: '{"prompt": "x"' });
    expect(answer.status).toBe(400);
    expect((answer.body as { detail: string }).detail).toMatch(/^Request body is not valid JSON: /);
  });

  it("answers 400 for an empty body", async () => {
    const answer = await call(generate, { method: "POST", headers: { "content-type": "application/json" } });
    expect(answer).toMatchObject({ status: 400, body: { detail: "Request body is not valid JSON: the body is empty" } });
  });

  it.each([["[]"], ['"a prompt"'], ["42"], ["null"]])("answers 400 for the non-object body %s", async (text) => {
    const answer = await call(generate, { method: "POST", headers: { "content-type": "application/json" }, body: text });
    expect(answer).toMatchObject({ status: 400, body: { detail: "Request body must be a JSON object" } });
  });

  it.each([["text/plain"], ["application/x-www-form-urlencoded"], ["multipart/form-data; boundary=x"]])(
    "answers 415 for Content-Type %s",
    async (contentType) => {
      const answer = await call(generate, { method: "POST", headers: { "content-type": contentType }, body: '{"prompt":"x"}' });
      expect(answer.status).toBe(415);
      expect((answer.body as { detail: string }).detail).toContain("application/json");
    },
  );

  it("answers 413 when Content-Length announces too much, before reading it", async () => {
    const answer = await postJson(generate, { prompt: "p".repeat(MAX_BODY_BYTES) });
    expect(answer).toMatchObject({ status: 413, body: { detail: `Request body is larger than ${MAX_BODY_BYTES} bytes (MAX_BODY_BYTES)` } });
  });

  it("answers 413 for a chunked body without Content-Length once it passes the cap", async () => {
    const url = new URL(generate);
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = httpRequest(
        { host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers: { "content-type": "application/json", "transfer-encoding": "chunked" } },
        (res) => {
          let text = "";
          res.on("data", (chunk: Buffer) => (text += chunk.toString()));
          res.on("end", () => {
            resolve({ status: res.statusCode ?? 0, text });
          });
        },
      );
      req.on("error", reject);
      req.write('{"prompt": "');
      // Keep sending well past the cap; a gateway that waited for the end would buffer it all.
      const chunk = "p".repeat(1024);
      let sent = 0;
      const pump = () => {
        while (sent < 64 && req.write(chunk)) sent++;
        if (sent < 64) req.once("drain", pump);
        else req.end('"}');
      };
      pump();
    });
    expect(status).toBe(413);
    expect(JSON.parse(text)).toEqual({ detail: `Request body is larger than ${MAX_BODY_BYTES} bytes (MAX_BODY_BYTES)`, request_id: expect.any(String) as unknown });
  });

  it("accepts a body with no Content-Type, as FastAPI does", async () => {
    const response = await fetch(generate, { method: "POST", body: new Blob(['{"prompt": ""}']) });
    expect(response.status).toBe(422);
  });
});
