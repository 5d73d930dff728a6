/**
 * Every door holds: what a probe from outside found at the HTTP doors, each
 * against the built gateway. Upgrade requests, malformed targets and Host
 * fields, HEAD, and bodies that once crashed a handler.
 */
import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { connect } from "node:net";
import { promisify } from "node:util";
import { afterAll, afterEach, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { call, eventually, listeningPid, rawExchange, signalGateway } from "./harness";
import type { Gateway } from "./harness";

let emulator: Emulator;
let gateway: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  emulator = await startEmulator({ stepMs: 5 });
  // HEALTH_REUSE near 0: every GET /api/health asks the GPU server, so a HEAD that does would show.
  gateway = await startFileGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, HEALTH_REUSE: "0.001" });
});

afterAll(() => emulator.close());

function openFiles(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Sends `head`, waits a moment, and hangs up reading nothing: a client that gave up. */
function sendAndHangUp(port: number, head: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => {
      socket.write(`${head}\r\n\r\n`, () => {
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 50);
      });
    });
    socket.on("error", reject);
  });
}

describe("Upgrade requests", () => {
  it.each(["/x", "/favicon.ico", "/_next/static/x.js", "/api/health", "/v1/models"])(
    "a WebSocket handshake to %s is answered 400 in JSON and its socket closed",
    async (path) => {
      const answer = await rawExchange(gateway, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==`);
      expect(answer.closed, "the server closed the connection").toBe(true);
      expect(answer.status).toBe(400);
      const body = JSON.parse(answer.body) as { detail?: string; error?: { message: string } };
      expect(body.detail ?? body.error?.message).toMatch(/No WebSocket is served at/);
    },
  );

  it.each(["/api/health", "/x", "/api"])("an h2c upgrade to %s is ignored and served as HTTP/1.1", async (path) => {
    const answer = await rawExchange(gateway, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA`);
    expect(answer.closed).toBe(true);
    expect(answer.status).toBe(path === "/x" ? 404 : 200);
  });

  it("curl --http2 gets its answer over HTTP/1.1", async () => {
    const { stdout } = await promisify(execFile)("curl", ["--silent", "--http2", "--max-time", "10", "--write-out", "\n%{http_code} %{http_version}", `${gateway.url}/api/health`]);
    const [body = "", status] = stdout.split("\n");
    expect(status).toBe("200 1.1");
    expect(JSON.parse(body)).toMatchObject({ gateway: "running" });
  });

  it("leaves no socket open behind clients that sent an upgrade and hung up", async () => {
    const pid = listeningPid(gateway);
    const port = Number(new URL(gateway.url).port);
    const before = openFiles(pid);
    const heads = ["/x", "/favicon.ico", "/api/health"].flatMap((path) => [
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket`,
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: h2c`,
    ]);
    for (let round = 0; round < 25; round++) await Promise.all(heads.map((head) => sendAndHangUp(port, head)));
    // 150 such clients once left 150 descriptors open for good; a few may be closing still.
    expect(await eventually(() => openFiles(pid) <= before + 10, 10_000), `open files: ${before} before, ${openFiles(pid)} after`).toBe(true);
    expect((await call(`${gateway.url}/api/health`)).status).toBe(200);
  });
});

describe("targets and Host fields Next cannot take", () => {
  it.each(["/api/jobs/%", "/api/jobs/%zz/events", "/api/images/%", "/api/%", "/api/jobs/%ff", "/x/%"])(
    "%s is a 400 with a JSON detail",
    async (path) => {
      const answer = await rawExchange(gateway, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close`);
      expect(answer.status).toBe(400);
      expect(JSON.parse(answer.body)).toEqual({ detail: expect.stringMatching(/malformed percent-escape/) as unknown });
    },
  );

  it.each(["/v1/%", "/v1/models/%"])("%s is a 400 in OpenAI's shape", async (path) => {
    const answer = await rawExchange(gateway, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close`);
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toMatchObject({ error: { message: expect.stringMatching(/malformed percent-escape/) as unknown, type: "invalid_request_error" } });
  });

  it("a malformed escape in the query is left to the route", async () => {
    const answer = await call(`${gateway.url}/api/health?x=%`);
    expect(answer.status).toBe(200);
  });

  it("two Host headers are a 400", async () => {
    const answer = await rawExchange(gateway, "GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close");
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toEqual({ detail: "The request has 2 Host headers: send one" });
  });

  it("a Host that is no host[:port] is a 400", async () => {
    const answer = await rawExchange(gateway, 'GET /api/health HTTP/1.1\r\nHost: a"b<script>\r\nConnection: close');
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toEqual({ detail: "The Host header is not a valid host[:port]" });
  });
});

/** A JSON value nested `depth` deep: arrays, or a chain of objects. */
function nested(depth: number, kind: "array" | "object"): string {
  return kind === "array" ? `${"[".repeat(depth)}${"]".repeat(depth)}` : `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

const DEEP = 30_000;
const SMALL = '"width":256,"height":256,"num_inference_steps":6';

describe("deeply nested bodies", () => {
  const doors = ["/api/generate", "/api/generate-stream", "/generate", "/generate-stream", "/api/jobs"];

  it.each(doors.flatMap((door) => [[door, "array"], [door, "object"]] as const))("%s refuses a %s 30,000 deep in prompt with a 422 and a bounded echo", async (door, kind) => {
    const depth = kind === "array" ? DEEP : 10_000; // an object chain is 5 bytes a level: 64 KB holds 10,000
    const answer = await call(`${gateway.url}${door}`, { method: "POST", headers: { "content-type": "application/json" }, body: `{"prompt":${nested(depth, kind)}}` });
    expect(answer.status).toBe(422);
    const [entry] = (answer.body as { detail: { type: string; input: unknown }[] }).detail;
    expect(entry?.type).toBe("string_type");
    expect(JSON.stringify(entry?.input).length, "the echo is bounded").toBeLessThan(2000);
  });

  it.each(doors)("%s refuses a missing prompt beside a deep unknown field with a bounded echo of the body", async (door) => {
    const answer = await call(`${gateway.url}${door}`, { method: "POST", headers: { "content-type": "application/json" }, body: `{"x":${nested(DEEP, "array")}}` });
    expect(answer.status).toBe(422);
    expect((answer.body as { detail: { type: string }[] }).detail[0]?.type).toBe("missing");
    expect(JSON.stringify(answer.body).length).toBeLessThan(2000);
  });

  it("/v1/images/generations refuses a deep prompt with OpenAI's 400", async () => {
    const answer = await call(`${gateway.url}/v1/images/generations`, { method: "POST", headers: { "content-type": "application/json" }, body: `{"prompt":${nested(DEEP, "array")},"response_format":"b64_json"}` });
    expect(answer.status).toBe(400);
    expect(answer.body).toMatchObject({ error: { param: "prompt" } });
  });

  it.each(["/api/generate", "/api/jobs"])("%s serves a valid body with a deep unknown field", async (door) => {
    const answer = await call(`${gateway.url}${door}`, { method: "POST", headers: { "content-type": "application/json" }, body: `{"prompt":"deep extra",${SMALL},"extra":${nested(DEEP, "array")}}` });
    expect(answer.status).toBeLessThan(300);
  });

  it("leaves nothing in flight: a SIGTERM after a burst of them drains at once", async ({ startGateway }) => {
    const own = await startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, SHUTDOWN_GRACE: "20" });
    for (const door of ["/api/generate", "/api/generate-stream", "/api/jobs"]) {
      const answer = await call(`${own.url}${door}`, { method: "POST", headers: { "content-type": "application/json" }, body: `{"x":${nested(DEEP, "array")}}` });
      expect(answer.status).toBe(422);
    }
    const exit = await signalGateway(own);
    expect(exit.code).toBe(0);
    expect(own.output()).not.toMatch(/gave_up|RangeError/);
    expect(exit.afterMs, "no drain waits out SHUTDOWN_GRACE").toBeLessThan(10_000);
  });
});

describe("HEAD", () => {
  async function head(path: string, headers: Record<string, string> = {}): Promise<Response> {
    const response = await fetch(`${gateway.url}${path}`, { method: "HEAD", headers });
    expect(await response.text()).toBe("");
    return response;
  }

  it("/api/health answers its headers without asking the GPU server", async () => {
    await call(`${gateway.url}/api/health`);
    const asked = emulator.stats().healthRequests;
    expect(asked, "GET asks").toBeGreaterThan(0);
    const response = await head("/api/health");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^application\/json/);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(emulator.stats().healthRequests).toBe(asked);
  });

  it.each(["/api/metrics", "/metrics", "/health"])("%s answers its headers without asking the GPU server", async (path) => {
    const before = emulator.stats();
    const response = await head(path);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^application\/json/);
    expect(emulator.stats().metricsRequests + emulator.stats().healthRequests).toBe(before.metricsRequests + before.healthRequests);
  });

  it("a job's events answer the stream's headers and end at once; another id is a 404", async () => {
    const submitted = await call(`${gateway.url}/api/jobs`, { method: "POST", headers: { "content-type": "application/json" }, body: `{"prompt":"head",${SMALL}}` });
    const { id } = submitted.body as { id: string };
    const response = await head(`/api/jobs/${id}/events`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect((await head(`/api/jobs/${id}`)).status).toBe(200);
    expect((await head("/api/jobs/nope/events")).status).toBe(404);
    expect((await head("/api/jobs/nope")).status).toBe(404);
  });
});

describe("the GPU server's refusals", () => {
  afterEach(() => {
    emulator.reset();
  });

  const GENERATE = `{"prompt":"refused",${SMALL}}`;
  const post = (path: string, body = GENERATE) => call(`${gateway.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body });

  it.each(["/api/generate", "/api/generate-stream", "/generate"])("its 503 without Retry-After comes with the gateway's estimate on %s", async (path) => {
    emulator.setFault({ kind: "status", status: 503, detail: "Request queue is full (max 2). Please try again later." });
    const answer = await post(path);
    expect(answer.status).toBe(503);
    expect(answer.body).toMatchObject({ detail: "Request queue is full (max 2). Please try again later." });
    expect(answer.headers.get("retry-after")).toMatch(/^[1-9]\d*$/);
  });

  it("its 503 on /v1 is OpenAI's server_error with Retry-After", async () => {
    emulator.setFault({ kind: "status", status: 503, detail: "CUDA not available" });
    const answer = await post("/v1/images/generations", '{"prompt":"refused","size":"256x256","response_format":"b64_json","num_inference_steps":6}');
    expect(answer.status).toBe(503);
    expect(answer.body).toMatchObject({ error: { type: "server_error", message: "CUDA not available" } });
    expect(answer.headers.get("retry-after")).toMatch(/^[1-9]\d*$/);
  });

  it.each([404, 405])("its %i is a 502 that names it, not the client's fault", async (status) => {
    emulator.setFault({ kind: "status", status, detail: status === 404 ? "Not Found" : "Method Not Allowed" });
    const answer = await post("/api/generate");
    expect(answer.status).toBe(502);
    expect((answer.body as { detail: string }).detail).toMatch(new RegExp(`^Text-to-image server answered HTTP ${status} \\(`));
  });
});

describe("the GPU server's own timeout", () => {
  it("keeps the GPU within MAX_CONCURRENT_REQUESTS: a generation it answered 504 still holds its slot while its executor runs", async ({ startGateway, onTestFinished }) => {
    // The genuine server's request_timeout: 504 at 250 ms, the generation (6 × 100 ms) going on behind it.
    const timing = await startEmulator({ stepMs: 100, slots: 4, requestTimeoutMs: 250 });
    onTestFinished(() => timing.close());
    const own = await startGateway({ TEXT2IMAGE_SERVER_URL: timing.url, MAX_CONCURRENT_REQUESTS: "2", REQUEST_TIMEOUT: "2", QUEUE_TIMEOUT: "5" });
    const post = () => call(`${own.url}/api/generate`, { method: "POST", headers: { "content-type": "application/json" }, body: `{"prompt":"timed out",${SMALL}}` });
    const answers = await Promise.all([post(), post(), post()]);
    expect(answers.map((answer) => answer.status)).toEqual([504, 504, 504]);
    expect(answers[0].body).toMatchObject({ detail: "Request timed out after 0.25 seconds" });
    expect(timing.stats().maxWork, "what the GPU ran at once").toBeLessThanOrEqual(2);
  });
});
