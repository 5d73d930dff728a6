/**
 * An emulator of text2image_server.py (see /work/shared/upstream-contract.md) with counters
 * and fault knobs for the gateway's tests and benchmarks. Node's standard library only.
 *
 * How faults play out on /generate and /generate-stream: the body is always validated first
 * (an invalid one gets its 422, never a fault), then latencyMs passes. status,
 * reset_before_headers and stall_headers then replace the response without queueing. The
 * body faults (malformed_json, missing_image, oversize, reset_mid_body, stall_body) queue and
 * generate as usual, then mangle the final JSON: the /generate body or the stream's complete
 * event. stream_cut and stream_malformed only affect /generate-stream.
 */
import { randomInt, randomUUID } from "node:crypto";
import { STATUS_CODES, createServer } from "node:http";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { imageDataUri } from "./png";
import type { ImageMode } from "./png";

const FAULT_KINDS = [
  "none", "status", "malformed_json", "missing_image", "reset_before_headers", "reset_mid_body",
  "stall_headers", "stall_body", "oversize", "stream_cut", "stream_malformed",
] as const;
const FAULT_TARGETS = ["generate", "health", "metrics", "all"] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];
export interface Fault {
  kind: FaultKind;
  /** kind "status": the status to answer, with {"detail": detail ?? the status text}. */
  status?: number;
  detail?: string;
  /** kind "oversize": the approximate size of the 200 JSON body. */
  bytes?: number;
  /** Extra delay before the response starts, whatever the kind. */
  latencyMs?: number;
  /** Default "generate" (= /generate and /generate-stream). */
  target?: (typeof FAULT_TARGETS)[number];
}

/** Open generate requests counted across several emulators: the load a whole GPU pool sees. */
export interface ConcurrencyGauge {
  active: number;
  max: number;
}

export interface EmulatorOptions {
  port?: number;
  host?: string;
  stepMs?: number;
  slots?: number;
  maxQueue?: number;
  image?: ImageMode;
  fault?: Fault | null;
  /** Shared with other emulators, to measure their combined highest concurrency. */
  gauge?: ConcurrencyGauge;
}

export interface EmulatorStats {
  /** POST /generate and /generate-stream received, valid or not. */
  generateRequests: number;
  healthRequests: number;
  metricsRequests: number;
  /** generate/stream requests open right now (from arrival until the response closes). */
  active: number;
  maxConcurrent: number;
  /** The client went away before the response was complete. */
  aborted: number;
  /** The response was written in full, whatever its status. */
  completed: number;
  lastBodies: unknown[];
  lastHeaders: IncomingHttpHeaders[];
}

export interface Emulator {
  readonly url: string;
  readonly port: number;
  stats(): EmulatorStats;
  setFault(fault: Fault | null): void;
  setStepMs(ms: number): void;
  reset(): void;
  close(): Promise<void>;
}

const NO_FAULT: Fault = { kind: "none" };
const DEFAULT_OVERSIZE_BYTES = 70_000_000;
const MAX_BODY_BYTES = 1024 * 1024;
const HISTORY = 50;

function integerIn(name: string, value: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  const found = allowed.find((item) => item === value);
  if (found === undefined) throw new TypeError(`${name} must be one of ${allowed.join(", ")}, got ${JSON.stringify(value)}`);
  return found;
}

/** Checks a fault spec from JSON (env, HTTP) or code; null means no fault. Unknown keys are errors, to catch typos. */
export function parseFault(value: unknown): Fault | null {
  if (value === null) return null;
  if (typeof value !== "object" || Array.isArray(value)) throw new TypeError("a fault must be an object or null");
  const spec = value as Record<string, unknown>;
  const fault: Fault = { kind: oneOf("fault.kind", spec.kind, FAULT_KINDS) };
  for (const [key, field] of Object.entries(spec)) {
    if (key === "kind" || field === undefined) continue;
    if (key === "status") fault.status = integerIn("fault.status", field, 200, 599);
    else if (key === "bytes") fault.bytes = integerIn("fault.bytes", field);
    else if (key === "latencyMs") fault.latencyMs = integerIn("fault.latencyMs", field);
    else if (key === "target") fault.target = oneOf("fault.target", field, FAULT_TARGETS);
    else if (key !== "detail") throw new TypeError(`fault.${key} is not a fault field`);
    else if (typeof field === "string") fault.detail = field;
    else throw new TypeError("fault.detail must be a string");
  }
  return fault;
}

const DIRECTIVE = /\[\[fault:([a-z_]+)(?::(\d{1,12}))?\]\]/g;

/**
 * The fault for one generate request: a kind directive in the prompt replaces the global
 * fault; latency directives add to whichever fault applies.
 */
function requestFault(prompt: string, global: Fault | null): Fault {
  let own: Fault | null = null;
  let latencyMs = 0;
  for (const [, name, arg] of prompt.matchAll(DIRECTIVE)) {
    const number = arg === undefined ? undefined : Number(arg);
    if (name === "latency") latencyMs += number ?? 0;
    else own = parseFault({ kind: name, status: name === "status" ? number : undefined, bytes: name === "oversize" ? number : undefined });
  }
  const fault = own ?? global ?? NO_FAULT;
  return { ...fault, latencyMs: (fault.latencyMs ?? 0) + latencyMs };
}

// ---- request validation, shaped like FastAPI/pydantic v2 (lax mode) ----

interface Issue { type: string; loc: (string | number)[]; msg: string; input?: unknown }
type Checked<T> = { ok: T } | { type: string; msg: string };

interface GenerateParams {
  prompt: string;
  negative_prompt: string;
  height: number;
  width: number;
  seed: number;
  num_inference_steps: number;
  guidance_scale: number;
}

const text = (min: number, max: number) => (value: unknown): Checked<string> => {
  if (typeof value !== "string") return { type: "string_type", msg: "Input should be a valid string" };
  const length = Array.from(value).length; // Python counts code points, not UTF-16 units
  if (length < min) return { type: "string_too_short", msg: `String should have at least ${min} character${min === 1 ? "" : "s"}` };
  if (length > max) return { type: "string_too_long", msg: `String should have at most ${max} characters` };
  return { ok: value };
};

const integer = (min = -Infinity, max = Infinity) => (value: unknown): Checked<number> => {
  // pydantic's lax mode also takes numeric strings.
  const number = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  if (typeof number !== "number" || Number.isNaN(number)) {
    return typeof value === "string"
      ? { type: "int_parsing", msg: "Input should be a valid integer, unable to parse string as an integer" }
      : { type: "int_type", msg: "Input should be a valid integer" };
  }
  if (!Number.isInteger(number)) return { type: "int_from_float", msg: "Input should be a valid integer, got a number with a fractional part" };
  if (number < min) return { type: "greater_than_equal", msg: `Input should be greater than or equal to ${min}` };
  if (number > max) return { type: "less_than_equal", msg: `Input should be less than or equal to ${max}` };
  return { ok: number };
};

const float = (value: unknown): Checked<number> => {
  const number = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  if (typeof number === "number" && !Number.isNaN(number)) return { ok: number };
  return typeof value === "string"
    ? { type: "float_parsing", msg: "Input should be a valid number, unable to parse string as a number" }
    : { type: "float_type", msg: "Input should be a valid number" };
};

function validate(body: unknown): GenerateParams | Issue[] {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return [{ type: "model_attributes_type", loc: ["body"], msg: "Input should be a valid dictionary or object to extract fields from", input: body }];
  }
  const fields = body as Record<string, unknown>;
  const issues: Issue[] = [];
  // Returns the fallback when the field is missing or invalid; the issues decide validity.
  const read = <T>(name: string, check: (value: unknown) => Checked<T>, fallback: T, required = false): T => {
    const value = fields[name];
    if (value === undefined) {
      if (required) issues.push({ type: "missing", loc: ["body", name], msg: "Field required", input: body });
      return fallback;
    }
    const result = check(value);
    if ("ok" in result) return result.ok;
    issues.push({ type: result.type, loc: ["body", name], msg: result.msg, input: value });
    return fallback;
  };
  const params: GenerateParams = {
    prompt: read("prompt", text(1, 2000), "", true),
    negative_prompt: read("negative_prompt", text(0, 2000), ""),
    height: read("height", integer(256, 2048), 1024),
    width: read("width", integer(256, 2048), 1024),
    seed: read("seed", integer(), -1),
    num_inference_steps: read("num_inference_steps", integer(1, 50), 9),
    guidance_scale: read("guidance_scale", float, 0),
  };
  return issues.length > 0 ? issues : params;
}

function parseJson(raw: Buffer): { value: unknown } | { issue: Issue } {
  if (raw.length === 0) return { issue: { type: "missing", loc: ["body"], msg: "Field required", input: null } };
  try {
    return { value: JSON.parse(raw.toString("utf8")) as unknown };
  } catch (error) {
    const position = /position (\d+)/.exec(String(error))?.[1];
    return { issue: { type: "json_invalid", loc: ["body", Number(position ?? 0)], msg: "JSON decode error", input: {} } };
  }
}

// ---- generation slots: `size` run at once, at most `maxQueue` wait in FIFO order ----

function createSlots(size: number, maxQueue: number) {
  let running = 0;
  const waiting: (() => void)[] = [];
  return {
    get running() { return running; },
    get queued() { return waiting.length; },
    /** null when the queue is full; otherwise settles once a slot is held, or rejects (leaving the queue) on abort. */
    enter(signal: AbortSignal): Promise<void> | null {
      if (running < size) {
        running++;
        return Promise.resolve();
      }
      if (waiting.length >= maxQueue) return null;
      return new Promise((resolve, reject) => {
        const grant = () => {
          signal.removeEventListener("abort", leave);
          resolve();
        };
        const leave = () => {
          waiting.splice(waiting.indexOf(grant), 1);
          reject(new DOMException("The client left the queue", "AbortError"));
        };
        waiting.push(grant);
        signal.addEventListener("abort", leave, { once: true });
      });
    },
    release(): void {
      const next = waiting.shift();
      if (next) next(); // the slot passes straight to the next in line
      else running--;
    },
  };
}

// ---- HTTP plumbing ----

interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  /** Aborts when the response closes, finished or not: it stops timers and queue waits. */
  signal: AbortSignal;
  /** Set when the emulator itself drops the connection (a fault), which is not a client abort. */
  hungUp: boolean;
}

interface GenerateResult {
  image_base64: string;
  seed: number;
  generation_time_ms: number;
  queue_wait_ms: number;
  width: number;
  height: number;
  image_id: string;
}

function reply(res: ServerResponse, status: number, json: string): void {
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(json) });
  res.end(json);
}

function replyJson(res: ServerResponse, status: number, value: unknown): void {
  reply(res, status, JSON.stringify(value));
}

/** The body, or null when it passes MAX_BODY_BYTES. Rejects if the client goes away. */
async function readBody(req: IncomingMessage): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Writes and waits until the chunk is handed to the kernel (or the client is gone), so a hang-up after it loses nothing. */
function flush(ex: Exchange, chunk: Buffer | string): Promise<void> {
  if (ex.signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    ex.res.write(chunk, () => { resolve(); });
    ex.signal.addEventListener("abort", () => { resolve(); }, { once: true });
  });
}

/** Drops the connection: with an RST ("reset"), or a plain close that keeps what was flushed. */
function hangUp(ex: Exchange, how: "reset" | "close"): void {
  ex.hungUp = true;
  if (how === "reset") ex.req.socket.resetAndDestroy();
  else ex.req.socket.destroy();
}

const sse = (event: object) => `data: ${JSON.stringify(event)}\n\n`;

/** The faults that replace the whole response; true when one did. */
function answerWithFault(ex: Exchange, fault: Fault): boolean {
  switch (fault.kind) {
    case "status": {
      const status = fault.status ?? 500;
      replyJson(ex.res, status, { detail: fault.detail ?? STATUS_CODES[status] ?? "Emulated fault" });
      return true;
    }
    case "reset_before_headers":
      hangUp(ex, "reset");
      return true;
    case "stall_headers":
      return true; // nothing is written; the client's own timeout or abort ends it
    default:
      return false;
  }
}

/** The final JSON (the /generate body or the stream's complete event), mangled as the fault says. */
function encodeResult(result: GenerateResult & { type?: "complete" }, fault: Fault): string {
  switch (fault.kind) {
    case "malformed_json": {
      const json = JSON.stringify(result);
      return json.slice(0, json.indexOf("base64,") + 12); // cut inside image_base64
    }
    case "missing_image":
      return JSON.stringify({ ...result, image_base64: undefined }); // undefined fields are left out
    case "oversize": {
      const prefix = "data:image/png;base64,";
      const base = JSON.stringify({ ...result, image_base64: prefix }).length;
      const padding = Math.max(0, (fault.bytes ?? DEFAULT_OVERSIZE_BYTES) - base);
      return JSON.stringify({ ...result, image_base64: prefix + "A".repeat(padding) });
    }
    default:
      return JSON.stringify(result);
  }
}

export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const host = options.host ?? "127.0.0.1";
  const port = integerIn("port", options.port ?? 0, 0, 65535);
  let stepMs = integerIn("stepMs", options.stepMs ?? 250);
  const slotCount = integerIn("slots", options.slots ?? 4, 1);
  const slots = createSlots(slotCount, integerIn("maxQueue", options.maxQueue ?? 32));
  const imageMode = oneOf("image", options.image ?? "pattern", ["pattern", "noise"] as const);
  let globalFault = parseFault(options.fault ?? null);

  const freshStats = (active: number): EmulatorStats => ({
    generateRequests: 0, healthRequests: 0, metricsRequests: 0, active, maxConcurrent: active,
    aborted: 0, completed: 0, lastBodies: [], lastHeaders: [],
  });
  const freshMetrics = () => ({ successful: 0, failed: 0, generationMsTotal: 0 });
  let records = freshStats(0);
  let metrics = freshMetrics();

  const remember = <T>(list: T[], item: T) => {
    list.push(item);
    if (list.length > HISTORY) list.shift();
  };
  const faultFor = (target: "generate" | "health" | "metrics"): Fault | null => {
    const applies = globalFault && [target, "all"].includes(globalFault.target ?? "generate");
    return applies ? globalFault : null;
  };

  /** Counts a generate request as open until its response closes, then as completed or aborted. */
  function track(ex: Exchange): { validated: boolean; produced: boolean } {
    const outcome = { validated: false, produced: false };
    records.active++;
    records.maxConcurrent = Math.max(records.maxConcurrent, records.active);
    const gauge = options.gauge;
    if (gauge) {
      gauge.active++;
      gauge.max = Math.max(gauge.max, gauge.active);
    }
    ex.res.on("close", () => {
      records.active--;
      if (gauge) gauge.active--;
      if (ex.res.writableFinished) records.completed++;
      else if (!ex.hungUp) records.aborted++;
      if (outcome.validated && !outcome.produced) metrics.failed++;
    });
    return outcome;
  }

  /** The parameters and fault of a generate request, or the error it gets instead (validation comes before any fault). */
  function admit(raw: Buffer | null): { params: GenerateParams; fault: Fault } | { status: number; detail: unknown } {
    if (raw === null) return { status: 413, detail: "Request body too large" };
    const parsed = parseJson(raw);
    if ("issue" in parsed) return { status: 422, detail: [parsed.issue] };
    remember(records.lastBodies, parsed.value);
    const params = validate(parsed.value);
    if (Array.isArray(params)) return { status: 422, detail: params };
    try {
      return { params, fault: requestFault(params.prompt, faultFor("generate")) };
    } catch (error) {
      return { status: 422, detail: `Invalid fault directive: ${(error as Error).message}` };
    }
  }

  async function handleGenerate(ex: Exchange, stream: boolean): Promise<void> {
    const { req, res, signal } = ex;
    records.generateRequests++;
    remember(records.lastHeaders, { ...req.headers });
    const outcome = track(ex);

    const verdict = admit(await readBody(req));
    if ("status" in verdict) {
      replyJson(res, verdict.status, { detail: verdict.detail });
      return;
    }
    const { params, fault } = verdict;
    outcome.validated = true;

    if (fault.latencyMs) await sleep(fault.latencyMs, undefined, { signal });
    if (answerWithFault(ex, fault)) return;
    const admitted = slots.enter(signal);
    if (!admitted) {
      replyJson(res, 503, { detail: "Queue is full" });
      return;
    }
    const queuedAt = performance.now();
    if (stream) {
      // The stream opens once the request is admitted; the queue wait happens inside it.
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.flushHeaders();
    }
    await admitted;
    let result: GenerateResult | null;
    try {
      result = await generate(ex, params, stream, fault, queuedAt);
    } finally {
      slots.release();
    }
    if (!result) return;
    outcome.produced = true;
    await deliver(ex, stream, result, fault);
  }

  /** Runs the steps while holding a slot; null when a stream fault ended the response early. */
  async function generate(ex: Exchange, params: GenerateParams, stream: boolean, fault: Fault, queuedAt: number): Promise<GenerateResult | null> {
    const startedAt = performance.now();
    const total = params.num_inference_steps;
    for (let step = 1; step <= total; step++) {
      if (stepMs > 0) await sleep(stepMs, undefined, { signal: ex.signal });
      if (!stream) continue;
      const event = sse({ type: "progress", step, total_steps: total, progress: Math.round((step / total) * 100) / 100, message: "Denoising" });
      if (fault.kind === "stream_cut" && step === Math.min(2, total)) {
        await flush(ex, event);
        hangUp(ex, "close");
        return null;
      }
      ex.res.write(event);
      if (fault.kind === "stream_malformed") {
        ex.res.end("data: {not json\n\n");
        return null;
      }
    }
    const seed = params.seed === -1 ? randomInt(2 ** 32) : params.seed;
    const image = imageDataUri(params.prompt, seed, params.width, params.height, imageMode);
    const generationMs = Math.round(performance.now() - startedAt);
    metrics.successful++;
    metrics.generationMsTotal += generationMs;
    return {
      image_base64: image, seed, generation_time_ms: generationMs, queue_wait_ms: Math.round(startedAt - queuedAt),
      width: params.width, height: params.height, image_id: randomUUID(),
    };
  }

  /** Sends the result; the body faults (reset_mid_body, stall_body) stop halfway through it. */
  async function deliver(ex: Exchange, stream: boolean, result: GenerateResult, fault: Fault): Promise<void> {
    const json = encodeResult(stream ? { type: "complete", ...result } : result, fault);
    const body = Buffer.from(stream ? `data: ${json}\n\n` : json);
    if (!stream) ex.res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
    if (fault.kind !== "reset_mid_body" && fault.kind !== "stall_body") {
      ex.res.end(body);
      return;
    }
    await flush(ex, body.subarray(0, body.length >> 1));
    if (fault.kind === "reset_mid_body") hangUp(ex, "close");
    // stall_body: nothing more until the client goes away (counted as aborted)
  }

  async function probe(ex: Exchange, target: "health" | "metrics", body: () => object): Promise<void> {
    const fault = faultFor(target) ?? NO_FAULT;
    if (fault.latencyMs) await sleep(fault.latencyMs, undefined, { signal: ex.signal });
    if (answerWithFault(ex, fault)) return;
    const json = JSON.stringify(body());
    reply(ex.res, 200, fault.kind === "malformed_json" ? json.slice(0, json.length >> 1) : json);
  }

  const health = () => ({
    status: "healthy", model_loaded: true, cuda_available: true, current_queue_size: slots.queued,
    active_generations: slots.running, available_slots: slotCount - slots.running,
  });
  const serverMetrics = () => ({
    total_requests: records.generateRequests,
    successful_generations: metrics.successful,
    failed_generations: metrics.failed,
    average_generation_time_ms: metrics.successful ? Math.round(metrics.generationMsTotal / metrics.successful) : 0,
    current_queue_size: slots.queued,
    active_generations: slots.running,
  });
  const stats = (): EmulatorStats => ({ ...records, lastBodies: [...records.lastBodies], lastHeaders: [...records.lastHeaders] });
  const reset = () => {
    records = freshStats(records.active); // open requests stay open: `active` is a live gauge
    metrics = freshMetrics();
    globalFault = null;
  };

  async function route(ex: Exchange): Promise<void> {
    const path = (ex.req.url ?? "/").split("?")[0];
    switch (`${ex.req.method} ${path}`) {
      case "GET /health":
        records.healthRequests++;
        return probe(ex, "health", health);
      case "GET /metrics":
        records.metricsRequests++;
        return probe(ex, "metrics", serverMetrics);
      case "POST /generate":
        return handleGenerate(ex, false);
      case "POST /generate-stream":
        return handleGenerate(ex, true);
      case "PUT /_emulator/fault":
        return putFault(ex);
      case "GET /_emulator/stats":
        replyJson(ex.res, 200, stats());
        return;
      case "POST /_emulator/outage":
        return startOutage(ex);
      case "POST /_emulator/reset":
        reset();
        replyJson(ex.res, 200, { ok: true });
        return;
      default:
        replyJson(ex.res, 404, { detail: "Not Found" });
    }
  }

  /**
   * Stops listening and drops every connection for `ms`, then listens on the
   * same port again: a GPU server that went down and came back, for tests of
   * clients that cannot stop and restart the emulator's process.
   */
  let outageTimer: NodeJS.Timeout | undefined;
  async function startOutage(ex: Exchange): Promise<void> {
    const raw = await readBody(ex.req);
    let ms: number;
    try {
      ms = integerIn("ms", (JSON.parse(raw?.toString("utf8") ?? "") as { ms?: unknown }).ms, 1, 600_000);
    } catch (error) {
      replyJson(ex.res, 422, { detail: (error as Error).message });
      return;
    }
    // Go down once this answer is out: the connection that asked closes with it.
    ex.res.once("close", () => {
      server.close();
      server.closeAllConnections();
      outageTimer = setTimeout(() => server.listen(bound, host), ms);
    });
    ex.res.setHeader("connection", "close");
    replyJson(ex.res, 200, { down_for_ms: ms });
  }

  async function putFault(ex: Exchange): Promise<void> {
    const raw = await readBody(ex.req);
    try {
      globalFault = parseFault(JSON.parse(raw?.toString("utf8") ?? ""));
    } catch (error) {
      replyJson(ex.res, 422, { detail: (error as Error).message });
      return;
    }
    replyJson(ex.res, 200, { fault: globalFault });
  }

  const server = createServer((req, res) => {
    const controller = new AbortController();
    const ex: Exchange = { req, res, signal: controller.signal, hungUp: false };
    res.on("close", () => { controller.abort(); });
    // A client that disconnects mid-write must never crash the emulator.
    res.on("error", () => {});
    req.on("error", () => {});
    route(ex).catch((error: unknown) => {
      if (controller.signal.aborted || req.socket.destroyed) return; // the connection is gone: nobody to answer
      console.error("emulator: unexpected error", error);
      if (res.headersSent) res.destroy();
      else replyJson(res, 500, { detail: "Internal emulator error" });
    });
  });
  server.keepAliveTimeout = 5000; // as uvicorn

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;

  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${bound}`,
    port: bound,
    stats,
    setFault: (fault) => {
      globalFault = parseFault(fault);
    },
    setStepMs: (ms) => {
      stepMs = integerIn("stepMs", ms);
    },
    reset,
    close: () =>
      new Promise<void>((resolve, reject) => {
        clearTimeout(outageTimer);
        if (!server.listening) {
          resolve();
          return;
        }
        server.close((error) => {
          if (error) reject(error);
          else resolve();
        });
        server.closeAllConnections(); // stalled and streaming responses would otherwise keep close() waiting
      }),
  };
}
