import { inflateSync } from "node:zlib";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator, Fault } from "../../emulator/server";

const STEP_MS = 5;
let emu: Emulator; // PNG images, for the decoder below
let tight: Emulator; // 1 slot, queue of 1, slower steps, stops on a closed connection: for queueing and aborts
let genuine: Emulator; // the defaults: JPEG, and a generation whose client left runs to its end

beforeAll(async () => {
  [emu, tight, genuine] = await Promise.all([
    startEmulator({ stepMs: STEP_MS, imageFormat: "png" }),
    startEmulator({ stepMs: 50, slots: 1, maxQueue: 1, onDisconnect: "stop" }),
    startEmulator({ stepMs: 30, slots: 1, maxQueue: 2 }),
  ]);
});
afterAll(async () => {
  await Promise.all([emu.close(), tight.close(), genuine.close()]);
});
beforeEach(() => {
  emu.reset();
  emu.setStepMs(STEP_MS);
  tight.reset();
  genuine.reset();
});

const SMALL = { width: 256, height: 256, num_inference_steps: 6 };

function post(target: Emulator, path: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(target.url + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...init,
  });
}

async function json(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>;
}

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const health = async (target: Emulator) => json(await fetch(`${target.url}/health`));

/** Bitwise CRC-32, independent of the encoder's, to check chunk CRCs. */
function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** Parses and checks a PNG data URI; returns its size and raw scanlines. */
function decodePng(dataUri: unknown): { width: number; height: number; pixels: Buffer } {
  const prefix = "data:image/png;base64,";
  expect(typeof dataUri === "string" && dataUri.startsWith(prefix)).toBe(true);
  const png = Buffer.from(String(dataUri).slice(prefix.length), "base64");
  expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const chunks: { type: string; data: Buffer }[] = [];
  for (let offset = 8; offset < png.length; ) {
    const length = png.readUInt32BE(offset);
    const end = offset + 8 + length;
    expect(png.readUInt32BE(end)).toBe(crc32(png.subarray(offset + 4, end)));
    chunks.push({ type: png.toString("latin1", offset + 4, offset + 8), data: png.subarray(offset + 8, end) });
    offset = end + 4;
  }
  expect(chunks.map((c) => c.type)).toEqual(["IHDR", "IDAT", "IEND"]);
  const header = chunks[0]?.data ?? Buffer.alloc(13);
  expect([header[8], header[9], header[12]]).toEqual([8, 2, 0]); // 8-bit RGB, not interlaced
  const pixels = inflateSync(Buffer.concat(chunks.filter((c) => c.type === "IDAT").map((c) => c.data)));
  return { width: header.readUInt32BE(0), height: header.readUInt32BE(4), pixels };
}

interface Received { events: { data: string; at: number }[]; error?: unknown }

/** Reads an SSE body, stamping each event with its arrival time; a failed read ends it with `error`. */
async function readEvents(res: Response, signal?: AbortSignal): Promise<Received> {
  if (!res.body) throw new Error("no body");
  const reader = res.body.getReader();
  signal?.addEventListener("abort", () => void reader.cancel());
  const decoder = new TextDecoder();
  const received: Received = { events: [] };
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
        received.events.push({ data: buffer.slice(0, end).replace(/^data: /, ""), at: performance.now() });
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (error) {
    received.error = error;
  }
  return received;
}

describe("contract endpoints", () => {
  it("GET /health reports the contract's fields with all slots free", async () => {
    const res = await fetch(`${emu.url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      status: "healthy", model_loaded: true, cuda_available: true, cuda_device: "Emulated GPU",
      current_queue_size: 0, active_generations: 0, available_slots: 4,
    });
    expect(emu.stats().healthRequests).toBe(1);
  });

  it("POST /generate returns a real PNG of exactly the requested size", async () => {
    const res = await post(emu, "/generate", { prompt: "a red fox", width: 320, height: 256, seed: 7, num_inference_steps: 6 });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body).toMatchObject({ seed: 7, width: 320, height: 256, image_id: null });
    expect(body.generation_time_ms).toBeGreaterThanOrEqual(6 * STEP_MS - 1);
    expect(Number.isInteger(body.queue_wait_ms)).toBe(true);
    const { width, height, pixels } = decodePng(body.image_base64);
    expect([width, height]).toEqual([320, 256]);
    expect(pixels.length).toBe(256 * (1 + 3 * 320));
    const colours = new Set<string>();
    for (let at = 1; at < pixels.length; at += 3 * 97) colours.add(pixels.subarray(at, at + 3).toString("hex"));
    expect(colours.size).toBeGreaterThan(5); // a visible pattern, not a blank image
  });

  it("omitted fields take the server's defaults (1024x1024, 9 steps)", async () => {
    const body = await json(await post(emu, "/generate", { prompt: "defaults" }));
    expect(body).toMatchObject({ width: 1024, height: 1024 });
    expect(body.generation_time_ms).toBeGreaterThanOrEqual(9 * STEP_MS - 1);
    expect(decodePng(body.image_base64).width).toBe(1024);
  });

  it("the same prompt and seed give the same image, another seed a different one", async () => {
    const image = async (seed: number) => (await json(await post(emu, "/generate", { prompt: "same", seed, ...SMALL }))).image_base64;
    const first = await image(1);
    expect(await image(1)).toBe(first);
    expect(await image(2)).not.toBe(first);
  });

  it("seed -1 is replaced by a random seed in [0, 2^32)", async () => {
    const seeds = await Promise.all(
      [1, 2, 3].map(async () => (await json(await post(emu, "/generate", { prompt: "random", seed: -1, ...SMALL }))).seed),
    );
    for (const seed of seeds) {
      expect(Number.isInteger(seed) && Number(seed) >= 0 && Number(seed) < 2 ** 32).toBe(true);
    }
    expect(new Set(seeds).size).toBeGreaterThan(1);
  });

  it("invalid bodies get FastAPI-style 422 issue lists", async () => {
    const detail = async (body: unknown) => {
      const res = await post(emu, "/generate", body);
      expect(res.status).toBe(422);
      return (await json(res)).detail;
    };
    expect(await detail("{not json")).toEqual([expect.objectContaining({ type: "json_invalid", loc: ["body", expect.any(Number)] })]);
    expect(await detail({})).toEqual([{ type: "missing", loc: ["body", "prompt"], msg: "Field required", input: {} }]);
    expect(await detail([])).toEqual([expect.objectContaining({ type: "model_attributes_type", loc: ["body"] })]);
    const many = await detail({ prompt: "x".repeat(2001), width: 100, height: 1024.5, num_inference_steps: 51, guidance_scale: "high" });
    expect(many).toEqual([
      expect.objectContaining({ type: "string_too_long", loc: ["body", "prompt"] }),
      expect.objectContaining({ type: "int_from_float", loc: ["body", "height"], input: 1024.5 }),
      expect.objectContaining({ type: "greater_than_equal", loc: ["body", "width"], msg: "Input should be greater than or equal to 256" }),
      expect.objectContaining({ type: "less_than_equal", loc: ["body", "num_inference_steps"] }),
      expect.objectContaining({ type: "float_parsing", loc: ["body", "guidance_scale"] }),
    ]);
    expect(emu.stats()).toMatchObject({ generateRequests: 4, completed: 4 });
  });

  it("unknown paths and methods get 404 Not Found", async () => {
    for (const res of [await fetch(`${emu.url}/nope`), await fetch(`${emu.url}/generate`)]) {
      expect(res.status).toBe(404);
      expect(await res.json()).toEqual({ detail: "Not Found" });
    }
  });

  it("GET /metrics reports the server's counters", async () => {
    await post(emu, "/generate", { prompt: "one", ...SMALL });
    await post(emu, "/generate", { prompt: "" });
    const { average_generation_time_ms: average, ...counters } = await json(await fetch(`${emu.url}/metrics`));
    expect(counters).toEqual({
      total_requests: 2, successful_generations: 1, failed_generations: 0, current_queue_size: 0, active_generations: 0,
    });
    expect(average).toBeGreaterThanOrEqual(6 * STEP_MS - 1);
    expect(emu.stats().metricsRequests).toBe(1);
  });

  it("stepMs 0 answers at once", async () => {
    emu.setStepMs(0);
    const started = performance.now();
    const res = await post(emu, "/generate", { prompt: "instant", width: 256, height: 256, num_inference_steps: 12 });
    expect(res.status).toBe(200);
    expect(performance.now() - started).toBeLessThan(150);
  });
});

describe("POST /generate-stream", () => {
  it("as the genuine server: queued first, one integer-percent progress event per step, the last one twice, then complete", async () => {
    emu.setStepMs(40);
    const res = await post(emu, "/generate-stream", { prompt: "stream", seed: 3, width: 256, height: 256, num_inference_steps: 6 });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    const { events, error } = await readEvents(res);
    expect(error).toBeUndefined();
    const parsed = events.map((event) => JSON.parse(event.data) as Record<string, unknown>);
    expect(parsed[0]).toEqual({ type: "queued", queue_position: 1, request_id: expect.stringMatching(/^[0-9a-f-]{36}$/) as unknown });
    // Python's json.dumps spacing, as the genuine server writes its events.
    expect(events[1]?.data).toBe('{"type": "progress", "step": 1, "total_steps": 6, "progress": 16}');
    expect(parsed.slice(1, 8).map((event) => event.progress)).toEqual([16, 33, 50, 66, 83, 100, 100]);
    expect(parsed.slice(1, 8).map((event) => event.step)).toEqual([1, 2, 3, 4, 5, 6, 6]);
    expect(parsed[8]).toMatchObject({ type: "complete", seed: 3, width: 256, height: 256, image_id: null });
    expect(Object.keys(parsed[8] ?? {})).toEqual(["type", "image_base64", "seed", "generation_time_ms", "queue_wait_ms", "width", "height", "image_id"]);
    expect(decodePng(parsed[8]?.image_base64).height).toBe(256);
    expect(parsed).toHaveLength(9);
    const times = events.map((event) => event.at);
    for (let i = 2; i < 7; i++) expect((times[i] ?? 0) - (times[i - 1] ?? 0)).toBeGreaterThan(20);
    expect((times[8] ?? 0) - (times[1] ?? 0)).toBeGreaterThan(5 * 40 * 0.75);
  });

  it("validation errors come before the stream as plain JSON", async () => {
    const res = await post(emu, "/generate-stream", { prompt: 5 });
    expect(res.status).toBe(422);
    expect(res.headers.get("content-type")).toBe("application/json");
  });
});

describe("queue, cancellation and records", () => {
  it("a full queue answers the genuine server's 503, and /health shows the queue", async () => {
    const long = { prompt: "long", ...SMALL, num_inference_steps: 12 };
    const first = post(tight, "/generate", long);
    await waitFor(async () => (await health(tight)).active_generations === 1);
    const second = post(tight, "/generate", long);
    await waitFor(async () => (await health(tight)).current_queue_size === 1);
    expect(await health(tight)).toMatchObject({ active_generations: 1, available_slots: 0 });

    const third = await post(tight, "/generate", long);
    expect(third.status).toBe(503);
    expect(await third.json()).toEqual({ detail: "Request queue is full (max 1). Please try again later." });
    const [a, b] = await Promise.all([first, second]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect((await json(b)).queue_wait_ms).toBeGreaterThan(100);
    expect(tight.stats()).toMatchObject({ maxConcurrent: 3, aborted: 0 });
  });

  it("aborting mid-generation stops the work, frees the slot and counts one abort", async () => {
    const client = new AbortController();
    const pending = post(tight, "/generate", { prompt: "slow", ...SMALL, num_inference_steps: 12 }, { signal: client.signal });
    await waitFor(async () => (await health(tight)).active_generations === 1);
    client.abort();
    await expect(pending).rejects.toThrow();
    await waitFor(() => tight.stats().aborted === 1);
    expect(await health(tight)).toMatchObject({ active_generations: 0, available_slots: 1 });

    const started = performance.now();
    expect((await post(tight, "/generate", { prompt: "next", ...SMALL })).status).toBe(200);
    expect(performance.now() - started).toBeLessThan(500); // 300 ms of steps, not stuck behind the abandoned 600 ms job
    expect(tight.stats()).toMatchObject({ aborted: 1, completed: 1, active: 0 });
  });

  it("aborting while queued leaves the queue", async () => {
    const first = post(tight, "/generate", { prompt: "first", ...SMALL, num_inference_steps: 12 });
    await waitFor(async () => (await health(tight)).active_generations === 1);
    const client = new AbortController();
    const queued = post(tight, "/generate", { prompt: "queued", ...SMALL }, { signal: client.signal });
    await waitFor(async () => (await health(tight)).current_queue_size === 1);
    client.abort();
    await expect(queued).rejects.toThrow();
    await waitFor(() => tight.stats().aborted === 1);
    // Still behind the 600 ms first job, yet no longer in the queue.
    expect(await health(tight)).toMatchObject({ current_queue_size: 0, active_generations: 1 });
    expect((await first).status).toBe(200);
    await waitFor(() => tight.stats().completed === 1);
    expect(tight.stats()).toMatchObject({ aborted: 1, active: 0 });
  });

  it("a client leaving mid-stream counts as aborted and frees the slot", async () => {
    const client = new AbortController();
    const res = await post(tight, "/generate-stream", { prompt: "s", ...SMALL, num_inference_steps: 12 }, { signal: client.signal });
    if (!res.body) throw new Error("no body");
    await res.body.getReader().read(); // the queued event
    client.abort();
    await waitFor(() => tight.stats().aborted === 1);
    expect(await health(tight)).toMatchObject({ available_slots: 1 });
  });

  it("responses written in full count as completed, never as aborted", async () => {
    await (await post(emu, "/generate", { prompt: "a", ...SMALL })).json();
    await readEvents(await post(emu, "/generate-stream", { prompt: "b", ...SMALL }));
    await (await post(emu, "/generate", { prompt: "" })).json();
    await waitFor(() => emu.stats().completed === 3);
    expect(emu.stats()).toMatchObject({ aborted: 0, active: 0 });
  });

  it("maxConcurrent records the peak of open generate requests", async () => {
    await Promise.all([1, 2, 3].map((n) => post(emu, "/generate", { prompt: `c${n}`, ...SMALL, num_inference_steps: 6 })));
    await waitFor(() => emu.stats().active === 0);
    expect(emu.stats().maxConcurrent).toBe(3);
  });

  it("lastBodies keep what was validated (an invalid body as received), lastHeaders the headers", async () => {
    const body = { prompt: "kept", extra: [1, { a: null }], ...SMALL, seed: "18446744073709551615" };
    await post(emu, "/generate", body, { headers: { "content-type": "application/json", "x-trace": "abc" } });
    await post(emu, "/generate-stream", { prompt: 42 });
    const stats = emu.stats();
    expect(stats.lastBodies).toEqual([
      { prompt: "kept", negative_prompt: "", ...SMALL, seed: 18446744073709551615, guidance_scale: 0 },
      { prompt: 42 },
    ]);
    expect(stats.lastHeaders[0]).toMatchObject({ "x-trace": "abc", "content-type": "application/json" });
    expect(stats.lastHeaders).toHaveLength(2);
  });
});

describe("faults", () => {
  const generate = (prompt = "fault") => post(emu, "/generate", { prompt, ...SMALL });
  const expectNoAbort = () => { expect(emu.stats().aborted).toBe(0); };

  it("status answers that status with the given or a default detail", async () => {
    emu.setFault({ kind: "status", status: 504, detail: "Generation timed out" });
    const res = await generate();
    expect(res.status).toBe(504);
    expect(await res.json()).toEqual({ detail: "Generation timed out" });
    emu.setFault({ kind: "status", status: 503 });
    expect(await (await generate()).json()).toEqual({ detail: "Service Unavailable" });
  });

  it("malformed_json answers 200 application/json that does not parse", async () => {
    emu.setFault({ kind: "malformed_json" });
    const res = await generate();
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    const text = await res.text();
    expect(text).toContain('{"image_base64":"data:image/png;base64,iVBOR');
    expect(() => JSON.parse(text) as unknown).toThrow();
  });

  it("missing_image answers valid JSON with every field but image_base64", async () => {
    emu.setFault({ kind: "missing_image" });
    const body = await json(await generate());
    expect(Object.keys(body).sort()).toEqual(["generation_time_ms", "height", "image_id", "queue_wait_ms", "seed", "width"]);
  });

  it("reset_before_headers drops the connection with nothing written", async () => {
    emu.setFault({ kind: "reset_before_headers" });
    await expect(generate()).rejects.toThrow();
    expectNoAbort();
  });

  it("reset_mid_body sends 200, a full Content-Length and half the body, then drops", async () => {
    emu.setFault({ kind: "reset_mid_body" });
    const res = await generate();
    expect(res.status).toBe(200);
    expect(Number(res.headers.get("content-length"))).toBeGreaterThan(1000);
    await expect(res.arrayBuffer()).rejects.toThrow();
    expectNoAbort();
  });

  it("stall_headers never answers; the client's timeout counts as an abort", async () => {
    emu.setFault({ kind: "stall_headers" });
    await expect(post(emu, "/generate", { prompt: "x" }, { signal: AbortSignal.timeout(100) })).rejects.toThrow();
    await waitFor(() => emu.stats().aborted === 1);
  });

  it("stall_body sends headers and part of the body, then nothing", async () => {
    emu.setFault({ kind: "stall_body" });
    const res = await post(emu, "/generate", { prompt: "x", ...SMALL }, { signal: AbortSignal.timeout(300) });
    expect(res.status).toBe(200);
    await expect(res.text()).rejects.toThrow();
    await waitFor(() => emu.stats().aborted === 1);
  });

  it("oversize answers valid JSON of about the given size", async () => {
    emu.setFault({ kind: "oversize", bytes: 3_000_000 });
    const text = await (await generate()).text();
    expect(Math.abs(text.length - 3_000_000)).toBeLessThan(100);
    expect(String((JSON.parse(text) as Record<string, unknown>).image_base64).length).toBeGreaterThan(2_900_000);
  });

  it("stream_cut sends two progress events, then drops the connection", async () => {
    emu.setFault({ kind: "stream_cut" });
    const { events, error } = await readEvents(await post(emu, "/generate-stream", { prompt: "x", ...SMALL }));
    expect(events.map((event) => (JSON.parse(event.data) as Record<string, unknown>).step)).toEqual([undefined, 1, 2]);
    expect(error).toBeDefined();
    expectNoAbort();
  });

  it("stream_malformed sends one progress event, then a data line that is not JSON, then ends", async () => {
    emu.setFault({ kind: "stream_malformed" });
    const { events, error } = await readEvents(await post(emu, "/generate-stream", { prompt: "x", ...SMALL }));
    expect(error).toBeUndefined();
    expect(events.map((event) => event.data)).toEqual([expect.stringContaining('"queued"'), expect.stringContaining('"step": 1'), "{not json"]);
  });

  it("stream_end ends the stream cleanly after two progress events, with no final event (the genuine server's failure)", async () => {
    emu.setFault({ kind: "stream_end" });
    const { events, error } = await readEvents(await post(emu, "/generate-stream", { prompt: "x", ...SMALL }));
    expect(error).toBeUndefined();
    expect(events.map((event) => (JSON.parse(event.data) as Record<string, unknown>).type)).toEqual(["queued", "progress", "progress"]);
  });

  it("body faults apply to the stream's complete event", async () => {
    emu.setFault({ kind: "missing_image" });
    const { events } = await readEvents(await post(emu, "/generate-stream", { prompt: "x", ...SMALL }));
    const complete = JSON.parse(events.at(-1)?.data ?? "") as Record<string, unknown>;
    expect(complete).toMatchObject({ type: "complete", width: 256 });
    expect(complete).not.toHaveProperty("image_base64");
  });

  it("latencyMs delays the response, with or without another kind", async () => {
    emu.setFault({ kind: "none", latencyMs: 150 });
    const started = performance.now();
    expect((await generate()).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(145);
  });

  it("an invalid body gets 422, never the fault", async () => {
    emu.setFault({ kind: "reset_before_headers" });
    expect((await post(emu, "/generate", { prompt: "" })).status).toBe(422);
  });

  it("target picks the endpoints a fault affects", async () => {
    emu.setFault({ kind: "status", status: 500 });
    expect((await fetch(`${emu.url}/health`)).status).toBe(200);
    emu.setFault({ kind: "status", status: 500, target: "health" });
    expect((await fetch(`${emu.url}/health`)).status).toBe(500);
    expect((await fetch(`${emu.url}/metrics`)).status).toBe(200);
    expect((await generate()).status).toBe(200);
    emu.setFault({ kind: "malformed_json", target: "all" });
    const metrics = await fetch(`${emu.url}/metrics`);
    expect(metrics.status).toBe(200);
    await expect(metrics.json()).rejects.toThrow();
    emu.setFault({ kind: "reset_before_headers", target: "metrics" });
    await expect(fetch(`${emu.url}/metrics`)).rejects.toThrow();
  });

  it("bad fault specs are refused", async () => {
    expect(() => { emu.setFault({ kind: "nope" } as unknown as Fault); }).toThrow(/fault.kind/);
    expect(() => { emu.setFault({ kind: "status", status: 99 }); }).toThrow(/fault.status/);
    await expect(startEmulator({ slots: 0 })).rejects.toThrow(/slots/);
  });
});

describe("prompt directives", () => {
  it("[[fault:status:N]] answers that status for that request only", async () => {
    const res = await post(emu, "/generate", { prompt: "x [[fault:status:503]]", ...SMALL });
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ detail: "Service Unavailable" });
    expect((await post(emu, "/generate", { prompt: "x", ...SMALL })).status).toBe(200);
  });

  it("a directive wins over the global fault", async () => {
    emu.setFault({ kind: "status", status: 500 });
    const body = await json(await post(emu, "/generate", { prompt: "[[fault:missing_image]]", ...SMALL }));
    expect(body).not.toHaveProperty("image_base64");
    expect(body).toHaveProperty("seed");
  });

  it("latency directives add to the global latency and combine with a kind", async () => {
    emu.setFault({ kind: "none", latencyMs: 100 });
    let started = performance.now();
    expect((await post(emu, "/generate", { prompt: "[[fault:latency:100]]", ...SMALL })).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(195);

    started = performance.now();
    const res = await post(emu, "/generate", { prompt: "[[fault:latency:150]][[fault:reset_mid_body]]", ...SMALL });
    expect(performance.now() - started).toBeGreaterThanOrEqual(145);
    await expect(res.text()).rejects.toThrow();
  });

  it("[[fault:oversize:N]] sets the body size; a bad directive is a 422", async () => {
    const text = await (await post(emu, "/generate", { prompt: "[[fault:oversize:500000]]", ...SMALL })).text();
    expect(Math.abs(text.length - 500_000)).toBeLessThan(100);
    expect((await post(emu, "/generate", { prompt: "[[fault:status:99]]" })).status).toBe(422);
  });
});

describe("control endpoints", () => {
  it("PUT /_emulator/fault sets, replaces and clears the global fault", async () => {
    const put = (body: string) => fetch(`${emu.url}/_emulator/fault`, { method: "PUT", body });
    expect((await put('{"kind":"status","status":502}')).status).toBe(200);
    expect((await post(emu, "/generate", { prompt: "x", ...SMALL })).status).toBe(502);
    expect((await put('{"kind":"bogus"}')).status).toBe(422);
    expect((await post(emu, "/generate", { prompt: "x", ...SMALL })).status).toBe(502);
    expect(await (await put("null")).json()).toEqual({ fault: null });
    expect((await post(emu, "/generate", { prompt: "x", ...SMALL })).status).toBe(200);
  });

  it("PUT /_emulator/step sets how long each step takes; a bad value is a 422", async () => {
    const put = (body: string) => fetch(`${emu.url}/_emulator/step`, { method: "PUT", body });
    expect(await (await put('{"ms":120}')).json()).toEqual({ step_ms: 120 });
    const startedAt = performance.now();
    const answer = await post(emu, "/generate", { prompt: "x", ...SMALL });
    expect(answer.status).toBe(200);
    await answer.arrayBuffer();
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(SMALL.num_inference_steps * 120 - 5);
    expect((await put('{"ms":-1}')).status).toBe(422);
    expect((await put('{"ms":0}')).status).toBe(200);
  });

  it("GET /_emulator/stats mirrors stats() and POST /_emulator/reset zeroes it and clears the fault", async () => {
    emu.setFault({ kind: "status", status: 500 });
    await post(emu, "/generate", { prompt: "x", ...SMALL });
    await fetch(`${emu.url}/health`);
    const stats = await json(await fetch(`${emu.url}/_emulator/stats`));
    expect(stats).toEqual(JSON.parse(JSON.stringify(emu.stats())) as unknown);
    expect(stats).toMatchObject({ generateRequests: 1, healthRequests: 1, completed: 1 });

    expect((await post(emu, "/_emulator/reset", "")).status).toBe(200);
    expect(emu.stats()).toEqual({
      generateRequests: 0, healthRequests: 0, metricsRequests: 0, active: 0, maxConcurrent: 0, work: 0, maxWork: 0,
      aborted: 0, completed: 0, lastBodies: [], lastHeaders: [], lastSeeds: [],
    });
    expect((await post(emu, "/generate", { prompt: "x", ...SMALL })).status).toBe(200);
  });
});

describe("outage", () => {
  it("POST /_emulator/outage stops it listening for the given time, then it serves again", async () => {
    const own = await startEmulator({ stepMs: 1 });
    try {
      const answer = await post(own, "/_emulator/outage", { ms: 300 });
      expect(await json(answer)).toEqual({ down_for_ms: 300 });
      await expect(fetch(`${own.url}/health`)).rejects.toThrow();
      await waitFor(async () => (await fetch(`${own.url}/health`).catch(() => undefined))?.status === 200, 3000);
    } finally {
      await own.close();
    }
  });
});

describe("noise images", () => {
  let noisy: Emulator;
  beforeAll(async () => {
    noisy = await startEmulator({ stepMs: 0, image: "noise", imageFormat: "png" });
  });
  afterAll(() => noisy.close());

  it("a 1024x1024 noise image makes ~1.4 MB of JSON, deterministically", async () => {
    const request = () => post(noisy, "/generate", { prompt: "bench", seed: 1 });
    const first = await (await request()).text();
    expect(first.length).toBeGreaterThan(1_200_000);
    expect(first.length).toBeLessThan(1_700_000);
    const image = (text: string) => (JSON.parse(text) as Record<string, unknown>).image_base64;
    expect(image(await (await request()).text())).toBe(image(first));
    expect(decodePng(image(first)).pixels.length).toBe(1024 * (1 + 3 * 1024));
  });
});

/** The size a baseline JPEG's SOF0 segment declares, after checking its start and end markers. */
function jpegSize(dataUri: unknown): { width: number; height: number } {
  const prefix = "data:image/jpeg;base64,";
  expect(typeof dataUri === "string" && dataUri.startsWith(prefix)).toBe(true);
  const jpeg = Buffer.from(String(dataUri).slice(prefix.length), "base64");
  expect([jpeg[0], jpeg[1], jpeg.at(-2), jpeg.at(-1)]).toEqual([0xff, 0xd8, 0xff, 0xd9]);
  const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
  expect(sof).toBeGreaterThan(0);
  return { height: jpeg.readUInt16BE(sof + 5), width: jpeg.readUInt16BE(sof + 7) };
}

describe("as the genuine server, by default", () => {
  it("answers JPEG images", async () => {
    const body = await json(await post(genuine, "/generate", { prompt: "jpeg", width: 320, height: 256, num_inference_steps: 6 }));
    expect(jpegSize(body.image_base64)).toEqual({ width: 320, height: 256 });
  });

  it("echoes a seed past 2^53 digit for digit", async () => {
    const text = await (await post(genuine, "/generate", '{"prompt": "big", "seed": 18446744073709551615, "width": 256, "height": 256, "num_inference_steps": 6}')).text();
    expect(text).toContain('"seed":18446744073709551615,');
  });

  it("runs a generation whose client left to its end, and a queued one too", async () => {
    const running = new AbortController();
    const queued = new AbortController();
    const long = { prompt: "orphan", ...SMALL, num_inference_steps: 10 }; // 300 ms each
    const first = post(genuine, "/generate", long, { signal: running.signal });
    await waitFor(async () => (await health(genuine)).active_generations === 1);
    const second = post(genuine, "/generate-stream", long, { signal: queued.signal });
    await waitFor(async () => (await health(genuine)).current_queue_size === 1);
    running.abort();
    queued.abort();
    await expect(first).rejects.toThrow();
    await second.then((res) => res.body?.cancel()).catch(() => undefined);
    await waitFor(() => genuine.stats().active === 0);
    // Both clients are gone, yet the GPU still has both generations to do.
    expect(genuine.stats().work).toBe(2);
    expect(await health(genuine)).toMatchObject({ active_generations: 1, current_queue_size: 1 });
    await waitFor(() => genuine.stats().work === 0, 3000);
    expect((await json(await fetch(`${genuine.url}/metrics`))).successful_generations).toBe(2);
    expect(genuine.stats()).toMatchObject({ maxWork: 2, aborted: 2 });
  });

  it("fails a size that is not a multiple of 16 in the pipeline: a 500, or a stream that ends after queued", async () => {
    const res = await post(genuine, "/generate", { prompt: "odd", width: 1000, height: 512, num_inference_steps: 6 });
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ detail: "Generation failed: Width must be divisible by 16 (got 1000). Please adjust the width to a multiple of 16." });
    const { events, error } = await readEvents(await post(genuine, "/generate-stream", { prompt: "odd", width: 512, height: 1000 }));
    expect(error).toBeUndefined();
    expect(events.map((event) => (JSON.parse(event.data) as Record<string, unknown>).type)).toEqual(["queued"]);
  });

  it("answers 503 without CUDA or a model, and says so in /health while still 'healthy'", async () => {
    genuine.setDevice({ cudaAvailable: false });
    const res = await post(genuine, "/generate", { prompt: "x", ...SMALL });
    expect([res.status, await res.json()]).toEqual([503, { detail: "CUDA not available" }]);
    expect(await health(genuine)).toMatchObject({ status: "healthy", cuda_available: false, cuda_device: null });
    genuine.setDevice({ cudaAvailable: true, modelLoaded: false });
    const stream = await post(genuine, "/generate-stream", { prompt: "x", ...SMALL });
    expect([stream.status, await stream.json()]).toEqual([503, { detail: "Model not loaded" }]);
    expect(await health(genuine)).toMatchObject({ model_loaded: false });
  });
});

describe("its own request_timeout, as the genuine server's", () => {
  // One slot: what the genuine server's single worker runs. 6 steps of 50 ms, a timeout of 120 ms.
  let timing: Emulator;
  beforeAll(async () => {
    timing = await startEmulator({ stepMs: 50, slots: 1, maxQueue: 4, requestTimeoutMs: 120 });
  });
  afterAll(async () => {
    await timing.close();
  });
  beforeEach(async () => {
    // The runaways of the test before end first: `work` counts every one.
    await waitFor(() => timing.stats().work === 0, 2000);
    timing.reset();
    timing.setStepMs(50);
    timing.setRequestTimeoutMs(120);
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it("answers 504 and frees its slot, while the GPU goes on with the generation to its end", async () => {
    const sent = performance.now();
    const res = await post(timing, "/generate", { prompt: "slow", ...SMALL });
    expect([res.status, await res.json()]).toEqual([504, { detail: "Request timed out after 0.12 seconds" }]);
    expect(timing.stats().work, "the executor still runs it").toBe(1);
    expect(await health(timing), "its load no longer counts it").toMatchObject({ active_generations: 0, available_slots: 1 });
    await waitFor(() => timing.stats().work === 0, 1000);
    expect(performance.now() - sent, "work counts it until its six steps are done").toBeGreaterThanOrEqual(6 * 50 - 5);
    expect(timing.stats().lastSeeds, "its image was made, for nobody").toHaveLength(1);
    const metrics = await json(await fetch(`${timing.url}/metrics`));
    expect(metrics).toMatchObject({ successful_generations: 0, failed_generations: 1 });
  });

  it("times only the generation, never the wait in the queue", async () => {
    timing.setStepMs(10); // 60 ms a generation: the third waits two of them, 120 ms, before its own
    const answers = await Promise.all(["a", "b", "c"].map((prompt) => post(timing, "/generate", { prompt, ...SMALL })));
    expect(answers.map((res) => res.status)).toEqual([200, 200, 200]);
    const third = await json(answers[2] ?? new Response());
    expect(third.queue_wait_ms).toBeGreaterThanOrEqual(100);
  });

  it("keeps the timeout a generation started with when the setting changes meanwhile", async () => {
    const res = post(timing, "/generate", { prompt: "armed", ...SMALL });
    await waitFor(async () => (await health(timing)).active_generations === 1);
    timing.setRequestTimeoutMs(1000);
    const answer = await res;
    expect([answer.status, await answer.json()]).toEqual([504, { detail: "Request timed out after 0.12 seconds" }]);
  });

  it("starts the next request at once after the timeout: the GPU runs two", async () => {
    const first = post(timing, "/generate", { prompt: "first", ...SMALL });
    await waitFor(async () => (await health(timing)).active_generations === 1);
    const second = post(timing, "/generate", { prompt: "second", ...SMALL });
    await waitFor(async () => (await health(timing)).current_queue_size === 1);
    expect((await first).status).toBe(504);
    await waitFor(() => timing.stats().work === 2, 500);
    expect((await second).status).toBe(504);
    expect(timing.stats().maxWork).toBe(2);
  });

  it("ends a stream with no final event, as the genuine stream ends on a timeout", async () => {
    const { events } = await readEvents(await post(timing, "/generate-stream", { prompt: "slow stream", ...SMALL }));
    const types = events.map((event) => (JSON.parse(event.data) as { type: string }).type);
    expect(types[0]).toBe("queued");
    expect(types).not.toContain("complete");
    expect(timing.stats().work).toBe(1);
  });

  it("times out a generation whose client already left without an error, and runs it to its end", async () => {
    const errors = vi.spyOn(console, "error");
    for (const path of ["/generate", "/generate-stream"]) {
      await waitFor(() => timing.stats().work === 0, 1000);
      timing.reset();
      const client = new AbortController();
      const left = post(timing, path, { prompt: `gone from ${path}`, ...SMALL }, { signal: client.signal })
        .then((res) => readEvents(res));
      await waitFor(async () => (await health(timing)).active_generations === 1);
      client.abort();
      await left.catch(() => undefined);
      await waitFor(() => timing.stats().aborted === 1);
      await pause(120); // past the timeout, before the sixth step
      expect([timing.stats().work, (await health(timing)).active_generations], path).toEqual([1, 0]);
      await waitFor(() => timing.stats().work === 0, 1000);
      expect(await json(await fetch(`${timing.url}/metrics`)), path).toMatchObject({ successful_generations: 0, failed_generations: 1 });
    }
    expect(errors).not.toHaveBeenCalled();
    timing.setRequestTimeoutMs(null);
    expect((await post(timing, "/generate", { prompt: "still serving", ...SMALL })).status).toBe(200);
  });

  it("keeps running a timed-out generation to its end even when it stops on a closed connection", async () => {
    const stopping = await startEmulator({ stepMs: 50, slots: 1, onDisconnect: "stop", requestTimeoutMs: 120 });
    try {
      expect((await post(stopping, "/generate", { prompt: "slow", ...SMALL })).status).toBe(504);
      await new Promise((resolve) => setTimeout(resolve, 60));
      expect(stopping.stats().work).toBe(1);
      await waitFor(() => stopping.stats().work === 0, 1000);
    } finally {
      await stopping.close();
    }
  });

  it("is set by setRequestTimeoutMs and PUT /_emulator/request-timeout; a bad value is a 422", async () => {
    const put = (body: string) => fetch(`${timing.url}/_emulator/request-timeout`, { method: "PUT", body });
    expect(await (await put('{"ms":null}')).json()).toEqual({ request_timeout_ms: null });
    expect((await post(timing, "/generate", { prompt: "no limit", ...SMALL })).status).toBe(200);
    expect(await (await put('{"ms":100}')).json()).toEqual({ request_timeout_ms: 100 });
    expect((await post(timing, "/generate", { prompt: "limited", ...SMALL })).status).toBe(504);
    expect((await put('{"ms":0}')).status).toBe(422);
    expect((await put('{"ms":"soon"}')).status).toBe(422);
    expect((await put("{}")).status).toBe(422);
    // Past 2^31 - 1 ms, Node's timers fire at once: such a timeout would be none at all.
    expect(() => { timing.setRequestTimeoutMs(2 ** 31); }).toThrow(RangeError);
    expect(() => { timing.setRequestTimeoutMs(0.5); }).toThrow(RangeError);
    await expect(startEmulator({ requestTimeoutMs: 2 ** 31 })).rejects.toThrow(RangeError);
    timing.setRequestTimeoutMs(null);
    await waitFor(() => timing.stats().work === 0, 1000);
    expect((await post(timing, "/generate", { prompt: "no limit again", ...SMALL })).status).toBe(200);
  });
});
