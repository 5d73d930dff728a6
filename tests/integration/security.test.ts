/**
 * Hardening, over real sockets: API keys, rate limits, CORS, security headers,
 * and secrets (the GPU server's token and URL credentials) that never leave
 * the gateway except towards the GPU server.
 */
import { request as httpRequest } from "node:http";
import { afterAll, beforeEach, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { call, eventually, freePort, postJson, readEvents } from "./harness";
import type { Gateway, JsonAnswer } from "./harness";

const KEY_A = "key-a-0f9e8d7c6b5a4938";
const KEY_B = "key-b-1a2b3c4d5e6f7a8b";
const SERVER_TOKEN = "gpu-token-7Hq2Zx91LmPw";
const SERVER_USER = "gpuuser";
const SERVER_PASSWORD = "hunter2secret";
const APP_ORIGIN = "http://app.example:8080";
const MAX_BODY_BYTES = 4096;
const small = { prompt: "a lock and key", width: 256, height: 256, num_inference_steps: 6 };
const GENERATE_PATHS = ["/api/generate", "/generate", "/api/generate-stream", "/generate-stream"];

let emulator: Emulator;
/** Keys, CORS list, server token and URL credentials. */
let keyed: Gateway;
/** Keys and RATE_LIMIT_PER_MINUTE=3: a limit per key. */
let limited: Gateway;
/** RATE_LIMIT_PER_MINUTE=2, no keys, TRUST_PROXY unset: a limit per socket address; CORS_ORIGINS=*. */
let perAddress: Gateway;
/** RATE_LIMIT_PER_MINUTE=2, TRUST_PROXY=true; no CORS_ORIGINS. */
let behindProxy: Gateway;
/** Token and URL credentials for a GPU server that is down. */
let down: Gateway;

function withCredentials(url: string): string {
  const parsed = new URL(url);
  parsed.username = SERVER_USER;
  parsed.password = SERVER_PASSWORD;
  return parsed.href;
}

it.beforeAll(async ({ startFileGateway }) => {
  emulator = await startEmulator({ stepMs: 1, slots: 4 });
  const deadPort = await freePort();
  [keyed, limited, perAddress, behindProxy, down] = await Promise.all([
    startFileGateway({
      TEXT2IMAGE_SERVER_URL: withCredentials(emulator.url),
      TEXT2IMAGE_SERVER_TOKEN: SERVER_TOKEN,
      GATEWAY_API_KEYS: `${KEY_A}, ${KEY_B}`,
      CORS_ORIGINS: APP_ORIGIN,
      MAX_BODY_BYTES: String(MAX_BODY_BYTES),
      REQUEST_BODY_TIMEOUT: "1",
      LOG_LEVEL: "trace",
    }),
    startFileGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, GATEWAY_API_KEYS: `${KEY_A},${KEY_B}`, RATE_LIMIT_PER_MINUTE: "3" }),
    startFileGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, RATE_LIMIT_PER_MINUTE: "2", CORS_ORIGINS: "*" }),
    startFileGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, RATE_LIMIT_PER_MINUTE: "2", TRUST_PROXY: "true" }),
    startFileGateway({
      TEXT2IMAGE_SERVER_URL: withCredentials(`http://127.0.0.1:${deadPort}`),
      TEXT2IMAGE_SERVER_TOKEN: SERVER_TOKEN,
      LOG_LEVEL: "trace",
    }),
  ]);
});

afterAll(() => emulator.close());

beforeEach(() => {
  emulator.reset();
});

function bearer(key: string): Record<string, string> {
  return { authorization: `Bearer ${key}` };
}

/** POSTs a generate body; a stream's events are read to the end. */
async function generate(url: string, headers: Record<string, string> = {}, body: unknown = small): Promise<JsonAnswer> {
  const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  if (response.headers.get("content-type")?.startsWith("text/event-stream")) {
    const events = await readEvents(response, performance.now());
    return { status: response.status, headers: response.headers, body: events.flatMap(({ data }) => (data ? [data] : [])) };
  }
  return { status: response.status, headers: response.headers, body: (await response.json()) as unknown };
}

function upstreamSawNothing(): void {
  expect(emulator.stats()).toMatchObject({ generateRequests: 0, healthRequests: 0, metricsRequests: 0 });
}

/**
 * Sends a POST whose body starts but never ends, and resolves with the answer
 * (or "no answer" after `waitMs`): a gateway that read the body first would hang.
 */
function answerToUnfinishedBody(url: string, headers: Record<string, string>, waitMs = 3000): Promise<{ status: number; body: string } | "no answer"> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: "POST",
        headers: { "content-type": "application/json", "transfer-encoding": "chunked", ...headers },
      },
      (res) => {
        let body = "";
        res.on("data", (chunk: Buffer) => (body += chunk.toString()));
        res.on("end", () => {
          clearTimeout(timer);
          req.destroy();
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on("error", (error) => {
      if (!req.destroyed) reject(error);
    });
    req.write('{"prompt": "never fini');
    const timer = setTimeout(() => {
      req.destroy();
      resolve("no answer");
    }, waitMs);
  });
}

describe("API keys (GATEWAY_API_KEYS)", () => {
  it("GET /api says whether a key is required", async () => {
    expect((await call(`${keyed.url}/api`)).body).toMatchObject({ api_key_required: true });
    expect((await call(`${behindProxy.url}/api`)).body).toMatchObject({ api_key_required: false });
  });

  it.each(GENERATE_PATHS)("%s without a key answers 401 with the Bearer challenge, and nothing reaches the GPU server", async (path) => {
    const answer = await generate(`${keyed.url}${path}`);
    expect(answer.status).toBe(401);
    expect(answer.body).toMatchObject({
      detail: "An API key is required: send it as Authorization: Bearer <key> or X-API-Key: <key>",
      request_id: expect.any(String) as unknown,
    });
    expect(answer.headers.get("www-authenticate")).toBe('Bearer realm="text2image-gateway"');
    upstreamSawNothing();
  });

  it.each(GENERATE_PATHS)("%s with a wrong key answers 401 invalid_token", async (path) => {
    for (const headers of [bearer(`${KEY_A}x`), { "x-api-key": KEY_A.slice(0, -1) }, bearer("short")]) {
      const answer = await generate(`${keyed.url}${path}`, headers);
      expect(answer.status).toBe(401);
      expect(answer.body).toMatchObject({ detail: "The API key is not valid" });
      expect(answer.headers.get("www-authenticate")).toBe('Bearer realm="text2image-gateway", error="invalid_token"');
    }
    upstreamSawNothing();
  });

  it.each(GENERATE_PATHS)("%s with either key, as a Bearer token or as X-API-Key, generates", async (path) => {
    const stream = path.endsWith("-stream");
    for (const headers of [bearer(KEY_A), { "x-api-key": KEY_B }]) {
      const answer = await generate(`${keyed.url}${path}`, headers);
      expect(answer.status).toBe(200);
      if (stream) expect((answer.body as { type: string }[]).at(-1)?.type).toBe("complete");
      else expect(answer.body).toMatchObject({ image_base64: expect.stringMatching(/^data:image\/jpeg;base64,/) as unknown });
    }
    expect(emulator.stats().generateRequests).toBe(2);
  });

  it("is checked before the body is read: a body that never ends, or one over MAX_BODY_BYTES, still gets the 401", async () => {
    const unfinished = await answerToUnfinishedBody(`${keyed.url}/api/generate`, {});
    expect(unfinished).toMatchObject({ status: 401 });
    const tooLarge = await postJson(`${keyed.url}/generate`, { prompt: "p".repeat(MAX_BODY_BYTES * 2) });
    expect(tooLarge.status).toBe(401);
    // With a key, the same unfinished body is waited for: the 401 above was not a body error.
    expect(await answerToUnfinishedBody(`${keyed.url}/api/generate`, bearer(KEY_A), 500)).toBe("no answer");
    upstreamSawNothing();
  });

  it("leaves health, metrics, /api, the OpenAPI document and /docs open", async () => {
    for (const path of ["/api", "/api/health", "/health", "/api/metrics", "/metrics", "/api/metrics/gateway", "/api/openapi.json", "/docs"]) {
      const response = await fetch(`${keyed.url}${path}`);
      await response.arrayBuffer();
      expect(response.status, path).toBe(200);
    }
  });

  it("does not ask a CORS preflight for a key (browsers send none)", async () => {
    const response = await fetch(`${keyed.url}/api/generate`, {
      method: "OPTIONS",
      headers: { origin: APP_ORIGIN, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" },
    });
    expect(response.status).toBe(204);
  });
});

describe("body timeout (REQUEST_BODY_TIMEOUT)", () => {
  it.each(GENERATE_PATHS)("%s answers a body still unfinished after REQUEST_BODY_TIMEOUT with 408 in JSON", async (path) => {
    const startedAt = performance.now();
    const answer = await answerToUnfinishedBody(`${keyed.url}${path}`, bearer(KEY_A), 5000);
    const elapsed = performance.now() - startedAt;
    expect(answer).not.toBe("no answer");
    const { status, body } = answer as { status: number; body: string };
    expect(status).toBe(408);
    expect(JSON.parse(body)).toMatchObject({ detail: "The request body did not arrive within 1 s (REQUEST_BODY_TIMEOUT)" });
    expect(elapsed).toBeGreaterThanOrEqual(950);
    upstreamSawNothing();
  });
});

describe("body cap", () => {
  it.each(GENERATE_PATHS)("%s answers 413 before any upstream I/O", async (path) => {
    const answer = await postJson(`${keyed.url}${path}`, { prompt: "p".repeat(MAX_BODY_BYTES) }, { headers: { "content-type": "application/json", ...bearer(KEY_A) } });
    expect(answer.status).toBe(413);
    upstreamSawNothing();
  });
});

describe("rate limits (RATE_LIMIT_PER_MINUTE)", () => {
  it("allows the limit per key, with RateLimit-* headers, then answers 429 with Retry-After before reading the body", async () => {
    const remaining: (string | null)[] = [];
    for (const path of ["/api/generate", "/generate", "/api/generate-stream"]) {
      const answer = await generate(`${limited.url}${path}`, bearer(KEY_A));
      expect(answer.status).toBe(200);
      expect(answer.headers.get("ratelimit-limit")).toBe("3");
      expect(Number(answer.headers.get("ratelimit-reset"))).toBeGreaterThan(0);
      remaining.push(answer.headers.get("ratelimit-remaining"));
    }
    expect(remaining).toEqual(["2", "1", "0"]);

    for (const path of GENERATE_PATHS) {
      const refused = await generate(`${limited.url}${path}`, bearer(KEY_A));
      expect(refused.status, path).toBe(429);
      expect(refused.body).toMatchObject({ detail: expect.stringMatching(/^Rate limit of 3 images per minute reached; retry in \d+ s/) as unknown });
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(60);
      expect(refused.headers.get("ratelimit-remaining")).toBe("0");
      expect(refused.headers.get("ratelimit-limit")).toBe("3");
    }
    // Before the body: an unfinished body is refused at once, not waited for.
    expect(await answerToUnfinishedBody(`${limited.url}/api/generate`, bearer(KEY_A))).toMatchObject({ status: 429 });
    expect(emulator.stats().generateRequests).toBe(3);

    // Another key has its own quota; a request without a valid key uses none.
    expect((await generate(`${limited.url}/api/generate`, bearer("not-a-valid-key-at-all"))).status).toBe(401);
    const other = await generate(`${limited.url}/api/generate`, bearer(KEY_B));
    expect(other.status).toBe(200);
    expect(other.headers.get("ratelimit-remaining")).toBe("2");
  });

  it("counts refusals in gateway_rejections_total{reason=\"rate_limited\"}", async () => {
    const text = await (await fetch(`${limited.url}/api/metrics/gateway`)).text();
    const count = Number(/^gateway_rejections_total\{reason="rate_limited"\} (\d+)$/m.exec(text)?.[1]);
    expect(count).toBe(5);
  });

  it("limits only the generate endpoints", async () => {
    for (let i = 0; i < 6; i++) {
      const answer = await call(`${limited.url}/api/health`);
      expect(answer.status).toBe(200);
      expect(answer.headers.get("ratelimit-limit")).toBeNull();
    }
    expect((await call(`${keyed.url}/api/openapi.json`)).headers.get("ratelimit-limit")).toBeNull();
  });

  it("keys by the socket's address when no proxy is trusted: a made-up X-Forwarded-For changes nothing", async () => {
    expect((await generate(`${perAddress.url}/api/generate`)).status).toBe(200);
    expect((await generate(`${perAddress.url}/api/generate`, { "x-forwarded-for": "198.51.100.1" })).status).toBe(200);
    for (const forwardedFor of ["198.51.100.2", "203.0.113.9, 198.51.100.3", ""]) {
      const answer = await generate(`${perAddress.url}/api/generate`, forwardedFor ? { "x-forwarded-for": forwardedFor } : {});
      expect(answer.status, forwardedFor).toBe(429);
    }
  });

  it("keys by the socket's address from a fresh process's very first request: a burst with made-up X-Forwarded-For gets the limit, no more", async ({ startGateway }) => {
    const fresh = await startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, RATE_LIMIT_PER_MINUTE: "3" }, { readyWhen: "listening" });
    const statuses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => generate(`${fresh.url}/api/generate`, { "x-forwarded-for": `198.51.100.${i + 1}` }).then((answer) => answer.status)),
    );
    expect(statuses.filter((status) => status === 200)).toHaveLength(3);
    expect(statuses.filter((status) => status === 429)).toHaveLength(17);
  });

  it("keys by X-Forwarded-For's left-most address with TRUST_PROXY=true", async () => {
    const from = (address: string) => generate(`${behindProxy.url}/api/generate`, { "x-forwarded-for": `${address}, 10.0.0.1` });
    expect((await from("198.51.100.10")).status).toBe(200);
    expect((await from("198.51.100.10")).status).toBe(200);
    expect((await from("198.51.100.10")).status).toBe(429);
    expect((await from("198.51.100.11")).status).toBe(200);
  });

  it("counts images on /v1 as OpenAI does: n takes n, one that does not fit is a 429 that sends nothing, more than the limit a 400", async () => {
    const from = (address: string, n: number) =>
      postJson(`${behindProxy.url}/v1/images/generations`, { prompt: "counted", n, size: "256x256", response_format: "b64_json", num_inference_steps: 6 }, { headers: { "content-type": "application/json", "x-forwarded-for": address } });
    const sent = emulator.stats().generateRequests;
    const two = await from("198.51.100.20", 2);
    expect(two.status).toBe(200);
    expect(two.headers.get("ratelimit-remaining")).toBe("0");
    const refused = await from("198.51.100.20", 1);
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ error: { type: "rate_limit_error", code: "rate_limited" } });
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(emulator.stats().generateRequests - sent, "two images, nothing for the refused one").toBe(2);
    const tooMany = await from("198.51.100.21", 3);
    expect(tooMany.status).toBe(400);
    expect(tooMany.body).toMatchObject({ error: { param: "n" } });
    expect((await from("198.51.100.21", 1)).headers.get("ratelimit-remaining"), "the 400 took nothing").toBe("1");
  });

  it("charges a job one image before its body is read, and an Idempotency-Key's replay nothing", async () => {
    const headers = (key?: string) => ({ "content-type": "application/json", "x-forwarded-for": "198.51.100.30", ...(key && { "idempotency-key": key }) });
    const job = await postJson(`${behindProxy.url}/api/jobs`, small, { headers: headers("job-k") });
    expect(job.status).toBe(202);
    expect(job.headers.get("ratelimit-remaining")).toBe("1");
    expect((await postJson(`${behindProxy.url}/api/generate`, small, { headers: headers() })).status).toBe(200);
    for (let replay = 0; replay < 3; replay++) {
      const again = await postJson(`${behindProxy.url}/api/jobs`, small, { headers: headers("job-k") });
      expect(again.status, "a replay is free").toBeLessThan(300);
      expect(again.headers.get("idempotent-replayed")).toBe("true");
    }
    const another = await postJson(`${behindProxy.url}/api/jobs`, small, { headers: headers("job-other") });
    expect(another.status).toBe(429);
  });

  it("sends no RateLimit headers when there is no limit", async () => {
    const answer = await generate(`${keyed.url}/api/generate`, bearer(KEY_A));
    expect(answer.status).toBe(200);
    expect(answer.headers.get("ratelimit-limit")).toBeNull();
  });
});

describe("CORS (CORS_ORIGINS)", () => {
  const preflight = (url: string, origin: string) =>
    fetch(url, {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type, authorization" },
    });

  it.each(["/generate", "/api/generate-stream"])("answers a preflight for %s from a listed origin", async (path) => {
    const response = await preflight(`${keyed.url}${path}`, APP_ORIGIN);
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe(APP_ORIGIN);
    expect(response.headers.get("access-control-allow-credentials")).toBe("true");
    expect(response.headers.get("access-control-allow-methods")).toBe("POST, OPTIONS");
    const allowed = (response.headers.get("access-control-allow-headers") ?? "").split(/,\s*/);
    expect(allowed).toEqual(expect.arrayContaining(["content-type", "authorization", "x-api-key", "x-request-id"]));
    expect(Number(response.headers.get("access-control-max-age"))).toBeGreaterThan(0);
    expect(response.headers.get("vary")).toMatch(/\bOrigin\b/);
  });

  it("lets a listed origin read answers and the headers a client needs", async () => {
    for (const [path, init] of [
      ["/generate", { method: "POST", headers: { "content-type": "application/json", ...bearer(KEY_A) }, body: JSON.stringify(small) }],
      ["/health", {}],
      ["/api/generate", { method: "POST", body: "{}" }], // an error answer too (401)
    ] as const) {
      const response = await fetch(`${keyed.url}${path}`, { ...init, headers: { ...("headers" in init ? init.headers : {}), origin: APP_ORIGIN } });
      await response.arrayBuffer();
      expect(response.headers.get("access-control-allow-origin"), path).toBe(APP_ORIGIN);
      expect(response.headers.get("access-control-allow-credentials"), path).toBe("true");
      expect(response.headers.get("access-control-expose-headers"), path).toMatch(
        /x-request-id, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset/,
      );
      expect(response.headers.get("vary"), path).toMatch(/\bOrigin\b/);
    }
  });

  it("gives an unlisted origin no CORS headers, so its browser blocks the answer", async () => {
    const responses = [await preflight(`${keyed.url}/generate`, "http://evil.example"), await fetch(`${keyed.url}/health`, { headers: { origin: "http://evil.example" } })];
    for (const response of responses) {
      await response.arrayBuffer();
      expect([...response.headers.keys()].filter((name) => name.startsWith("access-control-"))).toEqual([]);
    }
  });

  it("answers * without credentials only when CORS_ORIGINS=* is given", async () => {
    const response = await fetch(`${perAddress.url}/api/health`, { headers: { origin: "http://anywhere.example" } });
    expect(response.headers.get("access-control-allow-origin")).toBe("*");
    expect(response.headers.get("access-control-allow-credentials")).toBeNull();
  });

  it("sends no CORS header at all by default (same origin only)", async () => {
    for (const response of [await preflight(`${behindProxy.url}/generate`, APP_ORIGIN), await fetch(`${behindProxy.url}/health`, { headers: { origin: APP_ORIGIN } })]) {
      await response.arrayBuffer();
      expect([...response.headers.keys()].filter((name) => name.startsWith("access-control-"))).toEqual([]);
      expect(response.headers.get("vary") ?? "").not.toMatch(/\bOrigin\b/);
    }
  });

  it("refuses a browser's cross-site POST that skipped the preflight (no Content-Type) from an unlisted origin", async () => {
    const response = await fetch(`${behindProxy.url}/generate`, {
      method: "POST",
      headers: { origin: "http://evil.example", "sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors" },
      body: new Blob([JSON.stringify(small)]),
    });
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ detail: "Requests from this web origin are not allowed (CORS_ORIGINS)" });
    upstreamSawNothing();
  });

  it.each(["http://evil.example", "null"])("refuses that POST from Origin %s without Fetch Metadata too (older Safari)", async (origin) => {
    const response = await fetch(`${behindProxy.url}/generate`, { method: "POST", headers: { origin }, body: new Blob([JSON.stringify(small)]) });
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ detail: "Requests from this web origin are not allowed (CORS_ORIGINS)" });
    upstreamSawNothing();
  });

  it("takes that POST from the gateway's own origin without Fetch Metadata", async () => {
    const response = await fetch(`${behindProxy.url}/generate`, { method: "POST", headers: { origin: behindProxy.url }, body: new Blob([JSON.stringify(small)]) });
    expect(response.status).toBe(200);
    await response.arrayBuffer();
  });
});

describe("security headers", () => {
  function nonceOf(policy: string | null): string | undefined {
    return /script-src 'self' 'nonce-([A-Za-z0-9+/=]+)' 'strict-dynamic'/.exec(policy ?? "")?.[1];
  }

  it.each(["/", "/docs"])("%s has a CSP with a fresh nonce that every script carries, and no inline script without it", async (path) => {
    const first = await fetch(`${keyed.url}${path}`);
    const html = await first.text();
    const policy = first.headers.get("content-security-policy");
    const nonce = nonceOf(policy);
    expect(nonce).toBeDefined();
    for (const directive of ["default-src 'self'", "img-src 'self' data: blob:", "connect-src 'self'", "frame-ancestors 'none'", "object-src 'none'"]) {
      expect(policy).toContain(directive);
    }
    expect(policy).not.toMatch(/script-src[^;]*'unsafe-(inline|eval)'/);
    const scripts = [...html.matchAll(/<script\b[^>]*>/g)].map(([tag]) => tag);
    expect(scripts.length).toBeGreaterThan(0);
    for (const tag of scripts) expect(tag).toContain(`nonce="${nonce}"`);
    expect(first.headers.get("x-content-type-options")).toBe("nosniff");
    expect(first.headers.get("referrer-policy")).toBe("no-referrer");
    expect(first.headers.get("x-frame-options")).toBe("DENY");

    const second = await fetch(`${keyed.url}${path}`);
    await second.arrayBuffer();
    expect(nonceOf(second.headers.get("content-security-policy"))).not.toBe(nonce);
  });

  it("keeps the page's styles strict (nonce, no 'unsafe-inline')", async () => {
    const response = await fetch(`${keyed.url}/`);
    await response.arrayBuffer();
    expect(response.headers.get("content-security-policy")).toMatch(/style-src 'self' 'nonce-[^']+'(;|$)/);
  });

  it("puts the security headers on API answers (the original paths', errors and /v1's included), and no page CSP (the proxy does not run for the API)", async () => {
    for (const [url, init] of [
      [`${keyed.url}/api/health`, {}],
      [`${keyed.url}/health`, {}],
      [`${keyed.url}/metrics`, { method: "DELETE" }],
      [`${keyed.url}/generate`, { method: "POST", body: "{}" }],
      [`${keyed.url}/api/nowhere`, {}],
      [`${keyed.url}/api/openapi.json`, {}],
      [`${keyed.url}/v1/models`, {}],
    ] as const) {
      const response = await fetch(url, init);
      await response.arrayBuffer();
      expect(response.headers.get("x-content-type-options"), url).toBe("nosniff");
      expect(response.headers.get("referrer-policy"), url).toBe("no-referrer");
      expect(response.headers.get("x-frame-options"), url).toBe("DENY");
      expect(response.headers.get("content-security-policy"), url).toBeNull();
    }
  });

  it("puts them on a page that is not there, and on the proxy's own refusals", async () => {
    for (const [url, init, status] of [
      [`${keyed.url}/no-such-page`, {}, 404],
      [`${keyed.url}/API/generate`, {}, 404],
      [`${keyed.url}/`, { method: "POST", body: "{}" }, 405],
    ] as const) {
      const response = await fetch(url, init);
      await response.arrayBuffer();
      expect(response.status, url).toBe(status);
      expect(response.headers.get("x-content-type-options"), url).toBe("nosniff");
      expect(response.headers.get("x-frame-options"), url).toBe("DENY");
    }
  });
});

describe("secrets: the server token and URL credentials", () => {
  it("sends TEXT2IMAGE_SERVER_TOKEN as a Bearer token, in place of the URL's credentials", async () => {
    expect((await generate(`${keyed.url}/api/generate`, bearer(KEY_A))).status).toBe(200);
    expect(emulator.stats().lastHeaders.at(-1)?.authorization).toBe(`Bearer ${SERVER_TOKEN}`);
  });

  it("never appear in answers, headers, logs or errors, whatever happens", async () => {
    const seen: string[] = [];
    const record = async (label: string, url: string, init: RequestInit = {}) => {
      const response = await fetch(url, init);
      const text = await response.text();
      seen.push(`${label} ${response.status}\n${[...response.headers].map(([name, value]) => `${name}: ${value}`).join("\n")}\n${text}`);
      return response.status;
    };
    const json = (body: unknown, key = KEY_A): RequestInit => ({
      method: "POST",
      headers: { "content-type": "application/json", ...bearer(key) },
      body: JSON.stringify(body),
    });

    const statuses = [
      await record("generate", `${keyed.url}/api/generate`, json(small)),
      await record("stream", `${keyed.url}/generate-stream`, json(small)),
      await record("no key", `${keyed.url}/api/generate`, { method: "POST", body: "{}" }),
      await record("bad key", `${keyed.url}/api/generate`, json(small, "wrong-key-wrong-key")),
      await record("invalid", `${keyed.url}/api/generate`, json({ prompt: "" })),
      await record("too large", `${keyed.url}/api/generate`, json({ prompt: "p".repeat(MAX_BODY_BYTES) })),
      await record("health", `${keyed.url}/api/health`),
      await record("metrics", `${keyed.url}/metrics`),
      await record("info", `${keyed.url}/api`),
      await record("openapi", `${keyed.url}/api/openapi.json`),
      await record("gateway metrics", `${keyed.url}/api/metrics/gateway`),
      await record("docs", `${keyed.url}/docs`),
      await record("not found", `${keyed.url}/api/missing`),
    ];
    emulator.setFault({ kind: "status", status: 500, detail: "CUDA out of memory" });
    statuses.push(await record("upstream 500", `${keyed.url}/api/generate`, json(small)));
    emulator.setFault({ kind: "reset_before_headers" });
    statuses.push(await record("upstream reset", `${keyed.url}/api/generate`, json(small)));
    emulator.setFault({ kind: "status", status: 500, target: "metrics" });
    statuses.push(await record("upstream metrics 500", `${keyed.url}/api/metrics`));
    emulator.setFault(null);
    for (const path of ["/api/health", "/api/metrics", "/api", "/api/openapi.json", "/api/metrics/gateway"]) {
      statuses.push(await record(`down ${path}`, `${down.url}${path}`));
    }
    statuses.push(await record("down generate", `${down.url}/api/generate`, json(small)));
    statuses.push(await record("down stream", `${down.url}/api/generate-stream`, json(small)));
    expect(statuses).toEqual([200, 200, 401, 401, 422, 413, 200, 200, 200, 200, 200, 200, 404, 500, 502, 502, 200, 502, 200, 200, 200, 503, 503]);

    // Every request has logged its line by the time the last answer is read; give stdout a moment.
    await eventually(() => down.output().includes('"status":503'), 2000);
    const everything = [...seen, keyed.output(), down.output()].join("\n");
    expect(everything).toContain("Text-to-image server http://127.0.0.1:"); // the redacted URL is shown...
    const basic = Buffer.from(`${SERVER_USER}:${SERVER_PASSWORD}`).toString("base64");
    for (const secret of [SERVER_TOKEN, SERVER_PASSWORD, `${SERVER_USER}:`, `${SERVER_USER}@`, basic, KEY_A, KEY_B]) {
      expect(everything, secret).not.toContain(secret); // ...never the secrets
    }
  });
});
