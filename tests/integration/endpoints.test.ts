import { createHash } from "node:crypto";
import { afterAll, beforeEach, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { call, directImage, postJson, rawExchange } from "./harness";
import type { Gateway } from "./harness";

let emulator: Emulator;
let gateway: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  emulator = await startEmulator({ stepMs: 1 });
  const withCredentials = new URL(emulator.url);
  withCredentials.username = "gpuuser";
  withCredentials.password = "hunter2secret";
  gateway = await startFileGateway({ TEXT2IMAGE_SERVER_URL: withCredentials.href, MAX_CONCURRENT_REQUESTS: "3" });
});

afterAll(() => emulator.close());

beforeEach(() => {
  emulator.reset();
});

describe("GET /api", () => {
  it("describes the gateway without the server's credentials", async () => {
    const answer = await call(`${gateway.url}/api`);
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({
      message: expect.any(String) as unknown,
      version: expect.stringMatching(/^\d+\.\d+\.\d+/) as unknown,
      status: "running",
      text2image_server_url: emulator.url,
      mode: "gateway",
      api_key_required: false,
      size_multiple: 16,
      jobs: true,
    });
    expect(JSON.stringify(answer.body)).not.toContain("hunter2secret");
  });
});

describe("GET /api/health", () => {
  it("reports the gateway and the GPU server with every field of the original gateway", async () => {
    const answer = await call(`${gateway.url}/api/health`);
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({
      status: "healthy",
      gateway: "running",
      in_flight: 0,
      queued: 0,
      max_concurrent: 3,
      orphaned: 0,
      text2image_server: {
        status: "healthy",
        model_loaded: true,
        cuda_available: true,
        cuda_device: "Emulated GPU",
        current_queue_size: 0,
        active_generations: 0,
        available_slots: expect.any(Number) as unknown,
      },
    });
  });

  it("shares one upstream call among many concurrent callers", async ({ startGateway }) => {
    // A gateway of its own holds no earlier answer to reuse: the first caller's upstream call is a real one.
    const fresh = await startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, HEALTH_REUSE: "0.5" });
    emulator.reset();
    const answers = await Promise.all(Array.from({ length: 50 }, () => call(`${fresh.url}/api/health`)));
    expect(answers.every((answer) => answer.status === 200)).toBe(true);
    // One call serves them all; a second only if the 50 arrive over more than the 0.5 s reuse window (a loaded machine).
    expect(emulator.stats().healthRequests).toBeLessThanOrEqual(2);
  });

  it("sends JSON answers whole, with their Content-Length (not chunked): answers, errors, HEADs", async () => {
    const exchange = (line: string) => rawExchange(gateway, `${line}\r\nHost: 127.0.0.1\r\nConnection: close`);
    for (const answer of [
      await exchange("GET /api/health HTTP/1.1"),
      await exchange("GET /v1/models HTTP/1.1"),
      await exchange("POST /api/generate HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 0"),
    ]) {
      expect(answer.headers).not.toMatch(/^transfer-encoding:/im);
      expect(answer.headers).not.toMatch(/^x-gateway-content-length:/im);
      expect(answer.headers).toMatch(new RegExp(`^content-length: ${Buffer.byteLength(answer.body, "latin1")}$`, "im"));
      expect(JSON.parse(answer.body)).toBeTypeOf("object");
    }
    const document = await exchange("GET /api/openapi.json HTTP/1.1");
    const head = await exchange("HEAD /api/openapi.json HTTP/1.1");
    expect([head.status, head.body]).toEqual([200, ""]);
    expect(head.headers).toMatch(new RegExp(`^content-length: ${Buffer.byteLength(document.body, "latin1")}$`, "im"));
  });

  it("sends the server's credentials upstream as Basic auth", async () => {
    await postJson(`${gateway.url}/api/generate`, { prompt: "auth", width: 256, height: 256 });
    const headers = emulator.stats().lastHeaders.at(-1);
    expect(headers?.authorization).toBe(`Basic ${Buffer.from("gpuuser:hunter2secret").toString("base64")}`);
  });
});

describe("POST /api/generate", () => {
  it("forwards all seven fields and returns the upstream's answer unchanged", async () => {
    const response = await fetch(`${gateway.url}/api/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "a red fox in snow", width: 320, height: 256, seed: 42, extra: "dropped" }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^application\/json/);
    const body = (await response.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ seed: 42, width: 320, height: 256 });
    expect(body.image_base64).toMatch(/^data:image\/jpeg;base64,\/9j\//);
    expect(Object.keys(body)).toEqual(expect.arrayContaining(["generation_time_ms", "image_id"]));
    expect(emulator.stats().lastBodies).toEqual([
      {
        prompt: "a red fox in snow",
        negative_prompt: "",
        height: 256,
        width: 320,
        seed: 42,
        num_inference_steps: 9,
        guidance_scale: 0,
      },
    ]);
  });

  it("passes the image through byte for byte", async () => {
    const body = { prompt: "bytes", width: 256, height: 256, seed: 7 };
    const direct = await directImage(emulator.url, { ...body, negative_prompt: "", num_inference_steps: 9, guidance_scale: 0 });
    const viaGateway = (await postJson(`${gateway.url}/api/generate`, body)).body as { image_base64: string };
    expect(viaGateway.image_base64).toBe(direct);
  });

  it("answers the image's own bytes for Accept: image/*, at the original path too, and PNG when the server sends PNG", async ({ startGateway, onTestFinished }) => {
    const body = { prompt: "bytes", width: 256, height: 256, seed: 7 };
    const direct = await directImage(emulator.url, { ...body, negative_prompt: "", num_inference_steps: 9, guidance_scale: 0 });
    for (const path of ["/api/generate", "/generate"]) {
      const response = await fetch(`${gateway.url}${path}`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json", accept: "image/*" } });
      const bytes = Buffer.from(await response.arrayBuffer());
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe("image/jpeg");
      expect(response.headers.get("vary")).toMatch(/accept/i);
      expect(response.headers.get("x-seed")).toBe("7");
      expect(`data:image/jpeg;base64,${bytes.toString("base64")}`).toBe(direct);
    }
    const png = await startEmulator({ stepMs: 1, imageFormat: "png" });
    onTestFinished(() => png.close());
    const pngGateway = await startGateway({ TEXT2IMAGE_SERVER_URL: png.url });
    const response = await fetch(`${pngGateway.url}/api/generate`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json", accept: "image/png" } });
    const bytes = Buffer.from(await response.arrayBuffer());
    expect(response.headers.get("content-type")).toBe("image/png");
    expect(bytes.subarray(1, 4).toString("latin1")).toBe("PNG");
    expect(response.headers.get("x-image-sha256")).toBe(createHash("sha256").update(bytes).digest("hex"));
  });

  it("answers a wrong method with 405 JSON and Allow", async () => {
    for (const method of ["GET", "PUT", "PATCH", "DELETE"]) {
      const answer = await call(`${gateway.url}/api/generate`, { method });
      expect(answer.status, method).toBe(405);
      expect(answer.headers.get("allow")).toBe("POST");
      expect(answer.body).toEqual({ detail: `Method ${method} not allowed; use POST`, request_id: expect.any(String) as unknown });
    }
  });
});

describe("GET /api/metrics", () => {
  it("passes the GPU server's metrics through", async () => {
    await postJson(`${gateway.url}/api/generate`, { prompt: "count me", width: 256, height: 256 });
    const viaGateway = await call(`${gateway.url}/api/metrics`);
    const direct = await call(`${emulator.url}/metrics`);
    expect(viaGateway.status).toBe(200);
    expect(viaGateway.body).toEqual(direct.body);
    expect(viaGateway.body).toMatchObject({ successful_generations: 1 });
  });
});

describe("the original gateway's paths", () => {
  it.each([
    ["/health", "GET"],
    ["/metrics", "GET"],
    ["/generate", "GET"],
    ["/generate", "DELETE"],
    ["/health", "POST"],
  ])("%s answers %s exactly as /api%s", async (path, method) => {
    // One request id for both, so error answers may be equal to the byte.
    const headers = { "x-request-id": "same-id" };
    const seed = await call(`${gateway.url}${path}`, { method, headers });
    const api = await call(`${gateway.url}/api${path}`, { method, headers });
    expect(seed.status).toBe(api.status);
    expect(seed.headers.get("content-type")).toBe(api.headers.get("content-type"));
    expect(seed.headers.get("allow")).toBe(api.headers.get("allow"));
    expect(seed.body).toEqual(api.body);
  });

  it("/generate generates like /api/generate", async () => {
    const body = { prompt: "same", width: 256, height: 256, seed: 3 };
    const seed = await postJson(`${gateway.url}/generate`, body);
    const api = await postJson(`${gateway.url}/api/generate`, body);
    expect(seed.status).toBe(200);
    // Everything but what differs per generation: image, seed, size.
    const stable = (body: unknown) => {
      const { image_base64, seed, width, height } = body as Record<string, unknown>;
      return { image_base64, seed, width, height };
    };
    expect(stable(seed.body)).toEqual(stable(api.body));
    expect(emulator.stats().lastBodies).toHaveLength(2);
  });

  it("/generate validates like /api/generate", async () => {
    const sameId = { headers: { "content-type": "application/json", "x-request-id": "same-id" } };
    const seed = await postJson(`${gateway.url}/generate`, { prompt: "" }, sameId);
    const api = await postJson(`${gateway.url}/api/generate`, { prompt: "" }, sameId);
    expect(seed.status).toBe(422);
    expect(seed.body).toEqual(api.body);
  });
});

describe("unknown paths", () => {
  it("answer JSON 404 under /api", async () => {
    const answer = await call(`${gateway.url}/api/nothing/here`);
    expect(answer).toMatchObject({ status: 404, body: { detail: "No endpoint at /api/nothing/here" } });
  });

  it.each(["/API/generate", "/Api/health", "/API"])("answer JSON 404 for %s, not the page's HTML", async (path) => {
    const answer = await call(`${gateway.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(answer.headers.get("content-type")).toMatch(/^application\/json/);
    expect(answer).toMatchObject({ status: 404, body: { detail: `No endpoint at ${path}` } });
  });
});

describe("methods and targets no endpoint takes", () => {
  it.each([
    ["TRACE /api/health HTTP/1.1", 405, "Method TRACE not allowed"],
    ["TRACE / HTTP/1.1", 405, "Method TRACE not allowed"],
    ["TRACE /api/generate HTTP/1.1", 405, "Method TRACE not allowed"],
    ["OPTIONS * HTTP/1.1", 400, "Request target * is not served here: ask for a path"],
  ])("%s answers %i in JSON and prints nothing", async (head, status, detail) => {
    const printed = gateway.output().length;
    const answer = await rawExchange(gateway, `${head}\r\nHost: 127.0.0.1\r\nConnection: close`);
    expect(answer.status).toBe(status);
    expect(answer.headers).toMatch(/^content-type: application\/json/im);
    expect(JSON.parse(answer.body)).toMatchObject({ detail: expect.stringContaining(detail) as unknown });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(gateway.output().slice(printed)).not.toMatch(/TypeError|Error:|\n\s+at /);
  });

  it.each(["POST", "PUT", "DELETE", "PATCH"])("the pages answer %s with 405 and Allow: GET, HEAD", async (method) => {
    for (const path of ["/", "/docs"]) {
      const answer = await call(`${gateway.url}${path}`, { method });
      expect(answer.status, path).toBe(405);
      expect(answer.headers.get("allow")).toBe("GET, HEAD");
      expect(answer.body).toMatchObject({ detail: `Method ${method} not allowed; use GET or HEAD` });
    }
  });
});
