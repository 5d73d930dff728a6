/**
 * The generation pipeline and its two HTTP doors, in-process: a real
 * registry built from its own configuration, in front of a real emulator on
 * a socket, without `next start`. What only the built server shows (Next's
 * routing, after(), the socket guard) stays in tests/integration.
 */
import { createHash } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "@/lib/config";
import { generate, generateStream } from "@/lib/doors";
import { GatewayError } from "@/lib/errors";
import { observe } from "@/lib/http";
import type { RequestContext } from "@/lib/http";
import { RequestRecord } from "@/lib/observe/request";
import { Generation } from "@/lib/pipeline";
import type { GenerationObserver } from "@/lib/pipeline";
import { Registry, setRegistry } from "@/lib/registry";
import { ROUTES } from "@/lib/routes";
import type { RouteEntry } from "@/lib/routes";
import { startEmulator } from "@/emulator/server";
import type { Emulator } from "@/emulator/server";

let emulator: Emulator;
let gateway: Registry;

beforeAll(async () => {
  emulator = await startEmulator({ stepMs: 10, slots: 8 });
});
afterAll(async () => {
  await emulator.close();
});
afterEach(async () => {
  emulator.reset();
  await gateway.close(1000);
});

function freshGateway(env: Record<string, string> = {}): Registry {
  gateway = new Registry(parseConfig({ TEXT2IMAGE_SERVER_URL: emulator.url, LOG_LEVEL: "silent", ...env }));
  setRegistry(gateway);
  return gateway;
}

const BODY = { prompt: "a lighthouse", width: 256, height: 256, num_inference_steps: 6 };

function post(body: unknown, signal?: AbortSignal): Request {
  return new Request("http://gateway/api/generate", { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" }, signal });
}

/** What route() gives a handler; `closed()` runs what waits for the response's close, as Next's after() would. */
function context(entry: RouteEntry = ROUTES.generate, request = post(BODY)) {
  const tasks: (() => void)[] = [];
  const record = new RequestRecord(entry, request);
  const ctx: RequestContext = { record, afterResponse: (task) => tasks.push(task), headers: [] };
  return {
    ctx,
    record,
    closed: () => {
      for (const task of tasks.splice(0)) task();
    },
  };
}

/** An observer as a third door (a job) would be: it hears the phases and the parameters. */
function observer(): GenerationObserver & { phases: string[]; failures: string[] } {
  const phases: string[] = [];
  const failures: string[] = [];
  return {
    phases,
    failures,
    generating: () => phases.push("validated"),
    begin: (phase) => {
      phases.push(`${phase} begins`);
      return () => phases.push(`${phase} ends`);
    },
    upstreamContext: () => ({}),
    failedWith: (kind) => failures.push(kind),
  };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "resolved";
  } catch (error) {
    return error instanceof GatewayError ? error.code : `not a GatewayError: ${String(error)}`;
  }
}

/** Reads a generation's events to the end: the types relayed, and how it ended. */
function relayAll(generation: Generation): { relayed: (string | undefined)[]; outcome: Promise<string> } {
  const relayed: (string | undefined)[] = [];
  const outcome = codeOf(
    (async () => {
      for await (const event of await generation.events()) relayed.push(event.type);
    })(),
  );
  return { relayed, outcome };
}

describe("the generation pipeline", () => {
  it("runs admit, validate, queue, upstream and release in that order for any door", async () => {
    freshGateway();
    const heard = observer();
    const generation = new Generation(gateway, new AbortController().signal, heard);
    expect(gateway.drain.inFlight).toBe(1);
    await generation.accept(() => Promise.resolve(BODY));
    const types: (string | undefined)[] = [];
    for await (const event of await generation.events()) types.push(event.type);
    expect(types).toContain("progress");
    expect(types.at(-1)).toBe("complete");
    expect(heard.phases).toEqual(["validated", "queue begins", "queue ends", "upstream begins", "upstream ends"]);
    expect(gateway.limiter.stats().in_flight).toBe(0);
    generation.close();
    generation.close();
    expect(gateway.drain.inFlight).toBe(0);
  });

  it("refuses an invalid request before any slot or upstream call", async () => {
    freshGateway();
    const heard = observer();
    const generation = new Generation(gateway, new AbortController().signal, heard);
    expect(await codeOf(generation.accept(() => Promise.resolve({ prompt: "" })))).toBe("validation_failed");
    expect(await codeOf(generation.image())).toBe("not a GatewayError: Error: a generation is accepted before it is sent");
    generation.close();
    expect(heard.phases).toEqual([]);
    expect(emulator.stats().generateRequests).toBe(0);
  });

  it("tells a waiting generation of the drain as the shutdown's 503, not the client's 499", async () => {
    freshGateway({ MAX_CONCURRENT_REQUESTS: "1", QUEUE_TIMEOUT: "30" });
    emulator.setStepMs(100);
    const running = new Generation(gateway, new AbortController().signal, observer());
    await running.accept(() => Promise.resolve(BODY));
    const first = running.image();
    const waiting = new Generation(gateway, new AbortController().signal, observer());
    await waiting.accept(() => Promise.resolve(BODY));
    const second = codeOf(waiting.image());
    await expect.poll(() => gateway.limiter.stats().queued).toBe(1);
    const drained = gateway.drain.drain(30_000, 1000);
    expect(await second).toBe("shutting_down");
    expect(() => new Generation(gateway, new AbortController().signal, observer())).toThrow("Gateway is shutting down");
    expect((await first).length).toBeGreaterThan(0);
    waiting.close();
    running.close();
    expect(await drained).toBe("drained");
  });

  it("throws the error table's 502 for a stream that ends before the image, as the genuine server's failed generation does", async () => {
    freshGateway();
    emulator.setFault({ kind: "stream_end" });
    const generation = new Generation(gateway, new AbortController().signal, observer());
    await generation.accept(() => Promise.resolve(BODY));
    const { relayed, outcome } = relayAll(generation);
    expect(await outcome).toBe("upstream_bad_response");
    expect(relayed).toContain("progress");
    generation.close();
    // The server ended the stream: it is done, so the slot is free at once (no orphan).
    expect(gateway.upstream.orphaned()).toBe(0);
    expect(gateway.limiter.stats().in_flight).toBe(0);
  });

  it("throws the error table's 502 for a malformed event, after relaying the good ones, and frees the slot", async () => {
    freshGateway();
    emulator.setFault({ kind: "stream_malformed" });
    const generation = new Generation(gateway, new AbortController().signal, observer());
    await generation.accept(() => Promise.resolve(BODY));
    const { relayed, outcome } = relayAll(generation);
    expect(await outcome).toBe("upstream_bad_response");
    expect(relayed).toContain("progress");
    generation.close();
    await expect.poll(() => gateway.limiter.stats().in_flight).toBe(0);
  });
});

describe("the JSON door", () => {
  it("answers the GPU server's bytes unchanged and releases the generation once the response is closed", async () => {
    freshGateway();
    const { ctx, closed } = context();
    const response = await generate(post(BODY), ctx);
    expect(response.status).toBe(200);
    const answer = (await response.json()) as { image_base64: string; width: number };
    expect(answer.image_base64).toMatch(/^data:image\/jpeg;base64,/);
    expect(answer.width).toBe(256);
    expect(gateway.drain.inFlight).toBe(1);
    closed();
    expect(gateway.drain.inFlight).toBe(0);
    expect(gateway.limiter.stats().in_flight).toBe(0);
  });

  it("answers the image's own bytes and type for Accept: image/*, its fields in headers; JSON stays the default", async () => {
    freshGateway();
    const body = { ...BODY, seed: 12345678901234567890n.toString() };
    const json = (await (await generate(post(body), context().ctx)).json()) as { image_base64: string; generation_time_ms: number };
    const request = new Request("http://gateway/api/generate", {
      method: "POST",
      body: JSON.stringify({ ...BODY, seed: "__SEED__" }).replace('"__SEED__"', "12345678901234567890"),
      headers: { "content-type": "application/json", accept: "image/png, application/json;q=0.9" },
    });
    const { ctx } = context(ROUTES.generate, request);
    const response = await generate(request, ctx);
    const bytes = Buffer.from(await response.arrayBuffer());
    const [prefix = "", base64 = ""] = json.image_base64.split(",");
    expect(prefix).toBe("data:image/jpeg;base64");
    // The GPU server's own type (JPEG here), whatever image type was asked for.
    expect(response.headers.get("content-type")).toBe("image/jpeg");
    expect(bytes.equals(Buffer.from(base64, "base64"))).toBe(true);
    expect(response.headers.get("x-image-sha256")).toBe(createHash("sha256").update(bytes).digest("hex"));
    expect(response.headers.get("x-seed")).toBe("12345678901234567890");
    expect(Number(response.headers.get("x-generation-time-ms"))).toBeGreaterThanOrEqual(0);
    expect(ctx.headers).toContainEqual(["Vary", "Accept"]);

    for (const accept of ["application/json, image/png", "image/png;q=0.5, application/json", "*/*", "text/html"]) {
      const asked = new Request("http://gateway/api/generate", { method: "POST", body: JSON.stringify(BODY), headers: { "content-type": "application/json", accept } });
      expect((await generate(asked, context(ROUTES.generate, asked).ctx)).headers.get("content-type"), accept).toBe("application/json");
    }
  });

  it("reads the body with the configured limits: 413 past MAX_BODY_BYTES, never sent upstream", async () => {
    freshGateway({ MAX_BODY_BYTES: "100" });
    const { ctx, closed } = context();
    expect(await codeOf(generate(post({ ...BODY, prompt: "x".repeat(200) }), ctx))).toBe("payload_too_large");
    closed();
    expect(gateway.drain.inFlight).toBe(0);
    expect(emulator.stats().generateRequests).toBe(0);
  });
});

describe("observe, around every door", () => {
  it("releases a generation and answers a JSON 500 when even the error's answer fails", async () => {
    const gateway = freshGateway();
    const scheduled: (() => Promise<unknown>)[] = [];
    // A fault of the gateway's own after the generation began: an error whose detail JSON cannot write.
    const handler = async (request: Request, ctx: RequestContext) => {
      await generate(request, ctx);
      throw new GatewayError("validation_failed", [{ type: "x", loc: ["body"], msg: "unwritable", input: 10n }]);
    };
    const response = await observe(ROUTES.generate, handler, (task) => scheduled.push(task))(post(BODY));
    expect(response.status).toBe(500);
    expect(await response.json()).toMatchObject({ detail: "Internal gateway error" });
    expect(gateway.drain.inFlight, "counted until the response is closed").toBe(1);
    for (const task of scheduled) void task();
    expect(gateway.drain.inFlight).toBe(0);
  });
});

describe("the event-stream door", () => {
  it("relays the GPU server's events after `queued` events while it waits, then ends the record", async () => {
    freshGateway({ MAX_CONCURRENT_REQUESTS: "1" });
    const busy = context();
    const first = generate(post(BODY), busy.ctx);
    await expect.poll(() => gateway.limiter.stats().in_flight).toBe(1);
    const request = post(BODY);
    const { ctx, closed } = context(ROUTES.generateStream, request);
    const response = await generateStream(request, ctx);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const text = await response.text();
    const types = [...text.matchAll(/"type":\s*"(\w+)"/g)].map((match) => match[1]);
    expect(types[0]).toBe("queued");
    expect(types).toContain("progress");
    expect(types.at(-1)).toBe("complete");
    await first;
    busy.closed();
    closed();
    expect(gateway.drain.inFlight).toBe(0);
    expect(gateway.limiter.stats()).toMatchObject({ in_flight: 0, queued: 0 });
  });

  it("answers a failure before the stream starts as the usual JSON error", async () => {
    freshGateway();
    emulator.setFault({ kind: "status", status: 500, detail: "CUDA out of memory" });
    const request = post(BODY);
    const { ctx, closed } = context(ROUTES.generateStream, request);
    const failed = generateStream(request, ctx);
    await expect(failed).rejects.toMatchObject({ code: "upstream_status", status: 500, message: "Text-to-image server error: CUDA out of memory" });
    closed();
    expect(gateway.drain.inFlight).toBe(0);
  });

  it("frees the slot when the client cancels the stream mid-way", async () => {
    freshGateway();
    emulator.setStepMs(50);
    const request = post({ ...BODY, num_inference_steps: 12 });
    const { ctx, closed } = context(ROUTES.generateStream, request);
    const response = await generateStream(request, ctx);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    await reader.cancel();
    closed();
    // The genuine server runs on after a disconnect: the slot is the orphan's until the server is seen done.
    await expect.poll(() => gateway.upstream.orphaned(), { timeout: 5000 }).toBe(1);
    await expect.poll(() => gateway.limiter.stats().in_flight, { timeout: 10_000 }).toBe(0);
  });
});
