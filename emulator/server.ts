/**
 * An emulator of text2image_server.py (docs/genuine-server.md) with counters and fault knobs
 * for the gateway's tests and benchmarks. By default it speaks as the genuine server does: a
 * stream opens with a `queued` event, progress is an integer percent whose last event comes
 * twice, images are JPEG, sizes that are not multiples of 16 fail in the "pipeline" (a 500, or
 * a stream that ends with no final event), and a generation whose client left runs to its end
 * (`onDisconnect: "continue"`; `"stop"` is a server that stops on a closed connection). It
 * validates as the genuine server's model does, with code of its own (emulator/validation.ts,
 * held to the genuine server's recorded answers); it shares no code with the gateway.
 *
 * How faults play out on /generate and /generate-stream: the body is always validated first
 * (an invalid one gets its 422, never a fault), then latencyMs passes. status,
 * reset_before_headers and stall_headers then replace the response without queueing. The
 * body faults (malformed_json, missing_image, oversize, reset_mid_body, stall_body) queue and
 * generate as usual, then mangle the final JSON: the /generate body or the stream's complete
 * event. stream_cut and stream_malformed only affect /generate-stream.
 *
 * requestTimeoutMs is the genuine server's own `request_timeout`: a generation running longer is
 * answered 504 (a stream just ends) and its slot given back, while its steps go on to their end,
 * as the genuine executor thread does: `work` keeps counting it, /health no longer does.
 */
import { randomInt, randomUUID } from "node:crypto";
import { STATUS_CODES, createServer } from "node:http";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { imageDataUri } from "./image";
import { bodyJson, crashes, parseBody, validateBody } from "./validation";
import type { EmulatedRequest } from "./validation";
import type { ImageFormat, ImageMode } from "./image";

const FAULT_KINDS = [
  "none", "status", "malformed_json", "missing_image", "reset_before_headers", "reset_mid_body",
  "stall_headers", "stall_body", "oversize", "stream_cut", "stream_malformed", "stream_end",
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

export type DisconnectMode = "continue" | "stop";

/** Generations running or queued, counted across several emulators: the load a whole GPU pool sees. */
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
  /** The genuine server's storage.image_format; default "jpeg". */
  imageFormat?: ImageFormat;
  /** "continue" (default, the genuine server's way): a generation whose client left runs to its end; "stop": it stops. */
  onDisconnect?: DisconnectMode;
  fault?: Fault | null;
  /** Shared with other emulators, to measure their combined highest concurrency. */
  gauge?: ConcurrencyGauge;
  /** The genuine server's request_timeout, in ms: none by default. */
  requestTimeoutMs?: number | null;
  /**
   * Adds `emulator_sent_at` (the wall clock, in ms with fractions) to each
   * progress event: a field the genuine server never sends, which a gateway
   * relays as it relays any, so a benchmark can time an event's way to a client.
   */
  stampEvents?: boolean;
}

export interface EmulatorStats {
  /** POST /generate and /generate-stream received, valid or not. */
  generateRequests: number;
  healthRequests: number;
  metricsRequests: number;
  /** generate/stream requests open right now (from arrival until the response closes). */
  active: number;
  maxConcurrent: number;
  /** Generations running or queued now, whether or not their client is still there: what the GPU has to do. */
  work: number;
  maxWork: number;
  /** The client went away before the response was complete. */
  aborted: number;
  /** The response was written in full, whatever its status. */
  completed: number;
  lastBodies: unknown[];
  lastHeaders: IncomingHttpHeaders[];
  /** The seeds of the last images made, as digits: a client that sent -1 can so ask for the same image again. */
  lastSeeds: string[];
}

export interface Emulator {
  readonly url: string;
  readonly port: number;
  stats(): EmulatorStats;
  setFault(fault: Fault | null): void;
  setStepMs(ms: number): void;
  /** The server's own timeout of a generation (null: none). */
  setRequestTimeoutMs(ms: number | null): void;
  /** What /health reports and generations meet: CUDA and the model there or not. */
  setDevice(device: { cudaAvailable?: boolean; modelLoaded?: boolean }): void;
  reset(): void;
  close(): Promise<void>;
}

const NO_FAULT: Fault = { kind: "none" };
const DEFAULT_OVERSIZE_BYTES = 70_000_000;
const MAX_BODY_BYTES = 1024 * 1024;
const HISTORY = 50;
/** Node fires a longer timer at once: a request timeout past it would be no timeout at all. */
const MAX_TIMER_MS = 2 ** 31 - 1;

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

const TIMED_OUT = Symbol("timed out");

/** The promise's value, or TIMED_OUT once `ms` pass first (null: no limit); the timer never outlives it. */
async function timed<T>(promise: Promise<T>, ms: number | null): Promise<T | typeof TIMED_OUT> {
  if (ms === null) return promise;
  const timer = new AbortController();
  try {
    return await Promise.race([promise, sleep(ms, TIMED_OUT, { signal: timer.signal })]);
  } finally {
    timer.abort();
  }
}

// ---- HTTP plumbing ----

interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  /** Aborts when the response closes, finished or not: it stops timers and queue waits. */
  signal: AbortSignal;
  /** Set when the emulator itself drops the connection (a fault), which is not a client abort. */
  hungUp: boolean;
  /** Set when the server's own timeout answered: the generation runs on, its result for nobody. */
  timedOut: boolean;
}

interface GenerateResult {
  image_base64: string;
  /** The seed's digits: a seed past 2^53 is written back exactly, as Python does. */
  seed: string;
  generation_time_ms: number;
  queue_wait_ms: number;
  width: number;
  height: number;
  image_id: null;
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

/**
 * A flat object as Python's json writes it: `", "` and `": "` in stream events (json.dumps),
 * none in a /generate answer (FastAPI's JSONResponse); the seed goes as its digits.
 */
function pythonJson(value: object, compact: boolean): string {
  const [comma, colon] = compact ? [",", ":"] : [", ", ": "];
  const fields = Object.entries(value as Record<string, unknown>).filter(([, field]) => field !== undefined);
  return `{${fields.map(([key, field]) => `${JSON.stringify(key)}${colon}${key === "seed" ? String(field) : JSON.stringify(field)}`).join(comma)}}`;
}

const sse = (event: Record<string, unknown>) => `data: ${pythonJson(event, false)}\n\n`;

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
function encodeResult(result: GenerateResult & { type?: "complete" }, fault: Fault, compact: boolean): string {
  switch (fault.kind) {
    case "malformed_json": {
      const json = pythonJson(result, compact);
      return json.slice(0, json.indexOf("base64,") + 12); // cut inside image_base64
    }
    case "missing_image":
      return pythonJson({ ...result, image_base64: undefined }, compact);
    case "oversize": {
      const prefix = "data:image/png;base64,";
      const base = pythonJson({ ...result, image_base64: prefix }, compact).length;
      const padding = Math.max(0, (fault.bytes ?? DEFAULT_OVERSIZE_BYTES) - base);
      return pythonJson({ ...result, image_base64: prefix + "A".repeat(padding) }, compact);
    }
    default:
      return pythonJson(result, compact);
  }
}

/** The genuine pipeline's own checks: diffusers refuses sizes that are not multiples of 16, torch a seed past 64 bits. */
function pipelineError(params: EmulatedRequest): string | undefined {
  if (params.seed > 2n ** 64n - 1n) return "Overflow when unpacking long";
  if (params.height % 16 !== 0) return `Height must be divisible by 16 (got ${params.height}). Please adjust the height to a multiple of 16.`;
  if (params.width % 16 !== 0) return `Width must be divisible by 16 (got ${params.width}). Please adjust the width to a multiple of 16.`;
  return undefined;
}

export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const host = options.host ?? "127.0.0.1";
  const port = integerIn("port", options.port ?? 0, 0, 65535);
  let stepMs = integerIn("stepMs", options.stepMs ?? 250);
  const slotCount = integerIn("slots", options.slots ?? 4, 1);
  const maxQueue = integerIn("maxQueue", options.maxQueue ?? 32);
  const slots = createSlots(slotCount, maxQueue);
  const imageMode = oneOf("image", options.image ?? "pattern", ["pattern", "noise"] as const);
  const imageFormat = oneOf("imageFormat", options.imageFormat ?? "jpeg", ["jpeg", "png"] as const);
  const onDisconnect = oneOf("onDisconnect", options.onDisconnect ?? "continue", ["continue", "stop"] as const);
  let requestTimeoutMs = options.requestTimeoutMs == null ? null : integerIn("requestTimeoutMs", options.requestTimeoutMs, 1, MAX_TIMER_MS);
  let globalFault = parseFault(options.fault ?? null);
  const stamp = options.stampEvents === true ? () => ({ emulator_sent_at: performance.timeOrigin + performance.now() }) : () => ({});
  const device = { cudaAvailable: true, modelLoaded: true };

  const freshStats = (active: number, work: number): EmulatorStats => ({
    generateRequests: 0, healthRequests: 0, metricsRequests: 0, active, maxConcurrent: active, work, maxWork: work,
    aborted: 0, completed: 0, lastBodies: [], lastHeaders: [], lastSeeds: [],
  });
  const freshMetrics = () => ({ successful: 0, failed: 0, generationMsTotal: 0 });
  let records = freshStats(0, 0);
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
    ex.res.on("close", () => {
      records.active--;
      if (ex.res.writableFinished) records.completed++;
      else if (!ex.hungUp) records.aborted++;
      if (outcome.validated && !outcome.produced) metrics.failed++;
    });
    return outcome;
  }

  /** Counts one generation as the GPU's work from the queue to its end, here and on the shared gauge. */
  function beginWork(): () => void {
    records.work++;
    records.maxWork = Math.max(records.maxWork, records.work);
    const gauge = options.gauge;
    if (gauge) {
      gauge.active++;
      gauge.max = Math.max(gauge.max, gauge.active);
    }
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      records.work--;
      if (gauge) gauge.active--;
    };
  }

  /** The parameters and fault of a generate request, or the error it gets instead (validation comes before any fault). */
  function admit(raw: Buffer | null): { params: EmulatedRequest; fault: Fault } | { status: number; detail: unknown } | { crash: true } {
    if (raw === null) return { status: 413, detail: "Request body too large" };
    const parsed = parseBody(raw);
    if ("issue" in parsed) return { status: 422, detail: [parsed.issue] };
    const result = validateBody(parsed.value, parsed.sources);
    remember(records.lastBodies, JSON.parse(result.ok ? bodyJson(result.data) : raw.toString("utf8")) as unknown);
    if (crashes(result)) return { crash: true };
    if (!result.ok) return { status: 422, detail: result.detail };
    if (!device.modelLoaded) return { status: 503, detail: "Model not loaded" };
    if (!device.cudaAvailable) return { status: 503, detail: "CUDA not available" };
    try {
      return { params: result.data, fault: requestFault(result.data.prompt, faultFor("generate")) };
    } catch (error) {
      return { status: 422, detail: `Invalid fault directive: ${(error as Error).message}` };
    }
  }

  async function handleGenerate(ex: Exchange, stream: boolean): Promise<void> {
    const { req, res } = ex;
    records.generateRequests++;
    remember(records.lastHeaders, { ...req.headers });
    const outcome = track(ex);

    const verdict = admit(await readBody(req));
    if ("crash" in verdict) {
      res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
      res.end("Internal Server Error");
      return;
    }
    if ("status" in verdict) {
      replyJson(res, verdict.status, { detail: verdict.detail });
      return;
    }
    const { params, fault } = verdict;
    outcome.validated = true;

    if (fault.latencyMs) await sleep(fault.latencyMs, undefined, { signal: ex.signal });
    if (answerWithFault(ex, fault)) return;
    // A server that stops on a closed connection gives up the queue and the steps with it; the genuine one does not.
    const work = new AbortController();
    const stopWork = () => {
      work.abort();
    };
    if (onDisconnect === "stop") {
      if (ex.signal.aborted) stopWork();
      else ex.signal.addEventListener("abort", stopWork, { once: true });
    }
    const workSignal = work.signal;
    // The genuine server's queue_position: those waiting before it, plus one (1 when it runs at once).
    const position = slots.running < slotCount ? 1 : slots.queued + 1;
    const admitted = slots.enter(workSignal);
    if (!admitted) {
      replyJson(res, 503, { detail: `Request queue is full (max ${maxQueue}). Please try again later.` });
      return;
    }
    const endWork = beginWork();
    const queuedAt = performance.now();
    if (stream) {
      // As the genuine server: the stream opens at once and says where the request stands in line.
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no" });
      res.write(sse({ type: "queued", queue_position: position, request_id: randomUUID() }));
    }
    try {
      await admitted;
    } catch (error) {
      endWork(); // left the queue ("stop" mode): it holds no slot
      throw error;
    }
    let released = false;
    const releaseSlot = () => {
      if (released) return;
      released = true;
      slots.release();
    };
    // As wait_for, the timeout is the one in force when the generation starts; a later setting is for later ones.
    const timeoutMs = requestTimeoutMs;
    const generation = generate(ex, workSignal, params, stream, fault, queuedAt).finally(() => {
      releaseSlot();
      endWork();
    });
    const result = await timed(generation, timeoutMs);
    if (result === TIMED_OUT) {
      // As the genuine worker's wait_for: the semaphore goes back and the next job starts, the executor runs on.
      ex.timedOut = true;
      ex.signal.removeEventListener("abort", stopWork);
      releaseSlot();
      generation.catch(() => undefined);
      if (stream) res.end();
      else replyJson(res, 504, { detail: `Request timed out after ${String((timeoutMs ?? 0) / 1000)} seconds` });
      return;
    }
    if (typeof result === "string") {
      // The pipeline failed: /generate answers 500; the genuine stream just ends, with no final event.
      if (stream) res.end();
      else replyJson(res, 500, { detail: `Generation failed: ${result}` });
      return;
    }
    if (!result) return;
    outcome.produced = true;
    await deliver(ex, stream, result, fault);
  }

  /**
   * Runs the steps while holding a slot: a result, the pipeline's error text, or null when a
   * stream fault ended the response early. Stops with `workSignal` (the connection, in "stop" mode).
   */
  async function generate(
    ex: Exchange, workSignal: AbortSignal, params: EmulatedRequest, stream: boolean, fault: Fault, queuedAt: number,
  ): Promise<GenerateResult | null | string> {
    const startedAt = performance.now();
    const total = params.num_inference_steps;
    const failure = pipelineError(params);
    if (failure) return failure;
    for (let step = 1; step <= total; step++) {
      if (stepMs > 0) await sleep(stepMs, undefined, { signal: workSignal });
      if (!stream || ex.signal.aborted || ex.timedOut) continue;
      const event = sse({ type: "progress", step, total_steps: total, progress: Math.min(100, Math.trunc((step / total) * 100)), ...stamp() });
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
      if (fault.kind === "stream_end" && step === Math.min(2, total)) {
        ex.res.end();
        return null;
      }
    }
    // The genuine server sends the last progress event once more before the image.
    if (stream && !ex.signal.aborted && !ex.timedOut) ex.res.write(sse({ type: "progress", step: total, total_steps: total, progress: 100 }));
    const seed = params.seed === -1n ? String(randomInt(2 ** 32 - 1)) : String(params.seed);
    remember(records.lastSeeds, seed);
    const image = imageDataUri(params.prompt, seed, params.width, params.height, imageMode, imageFormat);
    const generationMs = Math.round(performance.now() - startedAt);
    // A generation its timeout answered is counted failed; its late end is nobody's success.
    if (!ex.timedOut) {
      metrics.successful++;
      metrics.generationMsTotal += generationMs;
    }
    return {
      image_base64: image, seed, generation_time_ms: generationMs, queue_wait_ms: Math.round(startedAt - queuedAt),
      width: params.width, height: params.height, image_id: null,
    };
  }

  /** Sends the result; the body faults (reset_mid_body, stall_body) stop halfway through it. */
  async function deliver(ex: Exchange, stream: boolean, result: GenerateResult, fault: Fault): Promise<void> {
    if (ex.signal.aborted) return; // the genuine server runs a generation whose client left, and answers nobody
    const json = encodeResult(stream ? { type: "complete", ...result } : result, fault, !stream);
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
    status: "healthy", model_loaded: device.modelLoaded, cuda_available: device.cudaAvailable,
    cuda_device: device.cudaAvailable ? "Emulated GPU" : null, current_queue_size: slots.queued,
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
  const stats = (): EmulatorStats => ({ ...records, lastBodies: [...records.lastBodies], lastHeaders: [...records.lastHeaders], lastSeeds: [...records.lastSeeds] });
  const reset = () => {
    records = freshStats(records.active, records.work); // open requests and running work stay: they are live gauges
    metrics = freshMetrics();
    globalFault = null;
    device.cudaAvailable = true;
    device.modelLoaded = true;
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
      case "PUT /_emulator/step":
        return putStep(ex);
      case "PUT /_emulator/request-timeout":
        return putRequestTimeout(ex);
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

  /** `{"ms": N}`: each inference step takes N ms from now on. */
  async function putStep(ex: Exchange): Promise<void> {
    const raw = await readBody(ex.req);
    try {
      stepMs = integerIn("ms", (JSON.parse(raw?.toString("utf8") ?? "") as { ms?: unknown }).ms, 0, 60_000);
    } catch (error) {
      replyJson(ex.res, 422, { detail: (error as Error).message });
      return;
    }
    replyJson(ex.res, 200, { step_ms: stepMs });
  }

  /** `{"ms": N}` or `{"ms": null}`: the server's own timeout of a generation from now on. */
  async function putRequestTimeout(ex: Exchange): Promise<void> {
    const raw = await readBody(ex.req);
    try {
      const { ms } = JSON.parse(raw?.toString("utf8") ?? "") as { ms?: unknown };
      requestTimeoutMs = ms === null ? null : integerIn("ms", ms, 1, 600_000);
    } catch (error) {
      replyJson(ex.res, 422, { detail: (error as Error).message });
      return;
    }
    replyJson(ex.res, 200, { request_timeout_ms: requestTimeoutMs });
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
    const ex: Exchange = { req, res, signal: controller.signal, hungUp: false, timedOut: false };
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
    setRequestTimeoutMs: (ms) => {
      requestTimeoutMs = ms === null ? null : integerIn("requestTimeoutMs", ms, 1, MAX_TIMER_MS);
    },
    setDevice: ({ cudaAvailable, modelLoaded }) => {
      if (cudaAvailable !== undefined) device.cudaAvailable = cudaAvailable;
      if (modelLoaded !== undefined) device.modelLoaded = modelLoaded;
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
