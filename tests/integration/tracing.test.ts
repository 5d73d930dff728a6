import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { call, eventually, postJson, streamGenerate } from "./harness";
import type { Gateway } from "./harness";

/** A span as OTLP/HTTP JSON carries it, with attributes flattened. */
interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: Record<string, unknown>;
  status?: { code?: number };
  service: unknown;
}

interface OtlpAttribute {
  key: string;
  value: Record<string, unknown>;
}

interface OtlpExport {
  resourceSpans?: {
    resource?: { attributes?: OtlpAttribute[] };
    scopeSpans?: { spans?: (Omit<ReceivedSpan, "attributes" | "service"> & { attributes?: OtlpAttribute[] })[] }[];
  }[];
}

function flatten(attributes: OtlpAttribute[] = []): Record<string, unknown> {
  return Object.fromEntries(
    attributes.map(({ key, value }) => {
      const raw = Object.values(value)[0];
      return [key, "intValue" in value ? Number(raw) : raw];
    }),
  );
}

/** A real OTLP/HTTP receiver (JSON protocol) on 127.0.0.1. */
async function startReceiver(): Promise<{ url: string; spans: ReceivedSpan[]; server: Server }> {
  const spans: ReceivedSpan[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => {
      if (req.url === "/v1/traces") {
        const payload = JSON.parse(body) as OtlpExport;
        for (const resourceSpan of payload.resourceSpans ?? []) {
          const service = flatten(resourceSpan.resource?.attributes)["service.name"];
          for (const scope of resourceSpan.scopeSpans ?? []) {
            for (const span of scope.spans ?? []) spans.push({ ...span, attributes: flatten(span.attributes), service });
          }
        }
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, server };
}

let receiver: Awaited<ReturnType<typeof startReceiver>>;
let emulator: Emulator;
let gateway: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  receiver = await startReceiver();
  emulator = await startEmulator({ stepMs: 1 });
  gateway = await startFileGateway({
    TEXT2IMAGE_SERVER_URL: emulator.url,
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_SERVICE_NAME: "gateway-under-test",
    OTEL_BSP_SCHEDULE_DELAY: "100",
    HEALTH_REUSE: "0.001", // every GET /api/health asks the GPU server, so it shows as a span
  });
});

afterAll(async () => {
  await emulator.close();
  receiver.server.close();
});

const INCOMING_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";

function traceOf(headers: Record<string, unknown> | undefined): string | undefined {
  return typeof headers?.traceparent === "string" ? headers.traceparent.split("-")[1] : undefined;
}

describe("traces", () => {
  it("continue an incoming traceparent through the upstream span to the GPU server", async () => {
    const answer = await postJson(
      `${gateway.url}/api/generate`,
      { prompt: "a secret fox", width: 320, height: 256, num_inference_steps: 7 },
      { headers: { "content-type": "application/json", traceparent: `00-${INCOMING_TRACE}-00f067aa0ba902b7-01` } },
    );
    expect(answer.status).toBe(200);
    const seenUpstream = emulator.stats().lastHeaders.at(-1);
    expect(traceOf(seenUpstream)).toBe(INCOMING_TRACE);

    expect(await eventually(() => receiver.spans.some((span) => span.name === "upstream generate"), 10_000)).toBe(true);
    const span = receiver.spans.find((candidate) => candidate.name === "upstream generate");
    expect(span?.traceId).toBe(INCOMING_TRACE);
    expect(span?.service).toBe("gateway-under-test");
    // The GPU server's parent is this very span.
    expect(String(seenUpstream?.traceparent).split("-")[2]).toBe(span?.spanId);
    expect(span?.attributes).toMatchObject({
      "server.address": "127.0.0.1",
      "server.port": Number(new URL(emulator.url).port),
      "http.response.status_code": 200,
      "text2image.width": 320,
      "text2image.height": 256,
      "text2image.steps": 7,
      "text2image.prompt_length": 12,
    });
    expect(span?.attributes["gateway.queue_wait_ms"]).toEqual(expect.any(Number));
    expect(span?.attributes["http.response.body.size"]).toBeGreaterThan(1000);
    expect(JSON.stringify(receiver.spans)).not.toContain("a secret fox");
  });

  it("start a trace when none comes in, and the GPU server sees the same trace id", async () => {
    const before = receiver.spans.length;
    await streamGenerate(`${gateway.url}/api/generate-stream`, { prompt: "stream me", width: 256, height: 256 });
    const trace = traceOf(emulator.stats().lastHeaders.at(-1));
    expect(trace).toMatch(/^[0-9a-f]{32}$/);
    expect(await eventually(() => receiver.spans.slice(before).some((span) => span.name === "upstream generate-stream"), 10_000)).toBe(true);
    const span = receiver.spans.slice(before).find((candidate) => candidate.name === "upstream generate-stream");
    expect(span?.traceId).toBe(trace);
  });

  it("mark a failed upstream call with its error kind", async () => {
    emulator.setFault({ kind: "status", status: 500, detail: "CUDA error" });
    await postJson(`${gateway.url}/api/generate`, { prompt: "fails", width: 256, height: 256 });
    emulator.setFault(null);
    expect(await eventually(() => receiver.spans.some((span) => span.attributes["error.type"] === "upstream_status"), 10_000)).toBe(true);
    const span = receiver.spans.find((candidate) => candidate.attributes["error.type"] === "upstream_status");
    expect(span).toMatchObject({ name: "upstream generate", status: { code: 2 }, attributes: { "http.response.status_code": 500 } });
  });

  it("cover health and metrics calls too", async () => {
    await call(`${gateway.url}/api/metrics`);
    await call(`${gateway.url}/api/health`);
    expect(await eventually(() => ["upstream health", "upstream metrics"].every((name) => receiver.spans.some((span) => span.name === name)), 10_000)).toBe(true);
  });
});

describe("without an OTLP endpoint (tracing off)", () => {
  let quiet: Gateway;
  it.beforeAll(async ({ startFileGateway }) => {
    quiet = await startFileGateway({ TEXT2IMAGE_SERVER_URL: emulator.url });
  });

  // Unchanged, parent span id included: a tracing gateway would put its own span there.
  it("passes the caller's trace context to the GPU server as it came, on both endpoints", async () => {
    const traceparent = `00-${INCOMING_TRACE}-00f067aa0ba902b7-01`;
    const headers = { "content-type": "application/json", traceparent, tracestate: "vendor=opaque" };
    expect((await postJson(`${quiet.url}/api/generate`, { prompt: "untraced", width: 256, height: 256 }, { headers })).status).toBe(200);
    expect(emulator.stats().lastHeaders.at(-1)).toMatchObject({ traceparent, tracestate: "vendor=opaque" });
    await streamGenerate(`${quiet.url}/api/generate-stream`, { prompt: "untraced", width: 256, height: 256 }, { headers });
    expect(emulator.stats().lastHeaders.at(-1)).toMatchObject({ traceparent, tracestate: "vendor=opaque" });

    await postJson(`${quiet.url}/api/generate`, { prompt: "no context", width: 256, height: 256 });
    expect(emulator.stats().lastHeaders.at(-1)?.traceparent).toBeUndefined();
  });

  it.each([
    ["garbage", { traceparent: "garbage", tracestate: "vendor=opaque" }, {}],
    ["upper-case hex", { traceparent: `00-${INCOMING_TRACE.toUpperCase()}-00f067aa0ba902b7-01` }, {}],
    ["an all-zero trace id", { traceparent: `00-${"0".repeat(32)}-00f067aa0ba902b7-01` }, {}],
    ["version ff", { traceparent: `ff-${INCOMING_TRACE}-00f067aa0ba902b7-01` }, {}],
    ["non-ASCII bytes", { traceparent: `00-${INCOMING_TRACE}-00f067aa0ba902b7-01\u00e9` }, {}],
    ["an 8 KB tracestate", { traceparent: `00-${INCOMING_TRACE}-00f067aa0ba902b7-01`, tracestate: `v=${"x".repeat(250)},`.repeat(32) }, { traceparent: `00-${INCOMING_TRACE}-00f067aa0ba902b7-01` }],
    ["a tracestate with a bad key", { traceparent: `00-${INCOMING_TRACE}-00f067aa0ba902b7-01`, tracestate: "Vendor=x" }, { traceparent: `00-${INCOMING_TRACE}-00f067aa0ba902b7-01` }],
    ["a later version", { traceparent: `01-${INCOMING_TRACE}-00f067aa0ba902b7-01-future` }, { traceparent: `00-${INCOMING_TRACE}-00f067aa0ba902b7-01` }],
  ])("forwards only a valid trace context: %s", async (_name, sent, forwarded) => {
    const headers = { "content-type": "application/json", ...sent };
    expect((await postJson(`${quiet.url}/api/generate`, { prompt: "checked context", width: 256, height: 256 }, { headers })).status).toBe(200);
    const seen = emulator.stats().lastHeaders.at(-1) ?? {};
    expect({ traceparent: seen.traceparent, tracestate: seen.tracestate }).toEqual({ traceparent: undefined, tracestate: undefined, ...forwarded });
  });
});
