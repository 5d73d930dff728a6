/** The requests the gateway reads and the GPU server's answers, for the handlers, the upstream client and the page (so: no server-only code); what the gateway answers is lib/api-shapes.ts. */
import { z } from "zod";
import { FINITE_NUMBER, JsonNumber, codePoints, laxFloat, laxInt, laxStr } from "./pydantic";
import type { Coerced } from "./pydantic";

export const PROMPT_MAX_CHARS = 2000;
export const SIZE_MIN = 256;
export const SIZE_MAX = 2048;
/** The genuine pipeline refuses other sizes with a 500 (SIZE_MULTIPLE). */
export const SIZE_MULTIPLE_DEFAULT = 16;
export const STEPS_MIN = 6;
export const STEPS_MAX = 12;
/** -1 asks the server for a random seed; its generator takes any 64-bit unsigned one. */
const SEED_MIN = -1;
export const SEED_MAX = 2n ** 64n - 1n;

/**
 * An int field, checked on the bigint of pydantic's lax reading (a 20-digit seed
 * keeps its digits), then `read` as the request holds it; its JSON Schema is stated, zod has none.
 */
function integer<T extends number | bigint>(
  { min, max, multipleOf, fallback, description }: { min: number; max: number | bigint; multipleOf?: number; fallback: number; description?: string },
  read: (value: bigint) => T,
) {
  const bounded = z.bigint().min(BigInt(min)).max(BigInt(max));
  return (multipleOf === undefined ? bounded : bounded.multipleOf(BigInt(multipleOf)))
    .default(BigInt(fallback))
    .transform(read)
    .meta({
      type: "integer",
      minimum: min,
      maximum: Number(max),
      ...(multipleOf === undefined ? {} : { multipleOf }),
      default: fallback,
      ...(description === undefined ? {} : { description }),
    });
}

/** A string field whose lengths count code points, as Python's len() does. */
function text(min: number, max: number) {
  return z
    .string()
    .check((ctx) => {
      const length = codePoints(ctx.value);
      if (length < min) ctx.issues.push({ code: "too_small", origin: "string", minimum: min, input: ctx.value, inclusive: true });
      else if (length > max) ctx.issues.push({ code: "too_big", origin: "string", maximum: max, input: ctx.value, inclusive: true });
    })
    .meta({ minLength: min, maxLength: max });
}

/** A bigint as a number where a number holds it exactly: every seed but the huge ones. */
export function seedValue(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

function requestSchema(sizeMultiple: number) {
  const size = integer({ min: SIZE_MIN, max: SIZE_MAX, multipleOf: sizeMultiple, fallback: 1024, description: `A multiple of ${sizeMultiple} (SIZE_MULTIPLE)` }, Number);
  const seed = integer(
    { min: SEED_MIN, max: SEED_MAX, fallback: -1, description: "-1: the server picks one; up to 2^64−1 (18446744073709551615), sent on digit for digit" },
    seedValue,
  );
  return z.object({
    prompt: text(1, PROMPT_MAX_CHARS),
    negative_prompt: text(0, PROMPT_MAX_CHARS).default(""),
    height: size,
    width: size,
    seed,
    num_inference_steps: integer({ min: STEPS_MIN, max: STEPS_MAX, fallback: 9 }, Number),
    guidance_scale: z.number().default(0.0),
  });
}

/** The generate request: fields arrive in pydantic's lax forms ("512", 1024.0, true) and leave plain. */
export const GenerateRequest = requestSchema(SIZE_MULTIPLE_DEFAULT).meta({ id: "GenerateRequest" });
/** A validated request, every field present: exactly what is sent upstream. */
export type GenerateRequest = z.output<typeof GenerateRequest>;
/** A seed: a bigint past 2^53, where a number would lose digits. */
export type Seed = GenerateRequest["seed"];

/** How pydantic reads each field from JSON, before the rules of the schema apply. */
const LAX_READ: Record<keyof GenerateRequest, (input: unknown) => Coerced<unknown>> = {
  prompt: laxStr,
  negative_prompt: laxStr,
  height: laxInt,
  width: laxInt,
  seed: laxInt,
  num_inference_steps: laxInt,
  guidance_scale: laxFloat,
};

/** The request as JSON for the GPU server: a seed past 2^53 goes digit for digit (JSON.stringify cannot write a bigint). */
export function requestJson(request: GenerateRequest): string {
  const { seed, ...fields } = request;
  return `${JSON.stringify(fields).slice(0, -1)},"seed":${String(seed)}}`;
}

/** The upstream's 200 answer to /generate, as far as the gateway checks it: it must hold an image. */
export const GenerateResponse = z.looseObject({
  image_base64: z.string().min(1).describe("A data URI: data:image/jpeg;base64,… by default, image/png when the server is configured so"),
  seed: z.number().optional(),
  generation_time_ms: z.number().optional(),
  queue_wait_ms: z.number().optional(),
  width: z.number().optional(),
  height: z.number().optional(),
  image_id: z.string().nullish(),
}).meta({ id: "GenerateResponse" });

/** Events of POST /api/generate-stream, relayed unchanged whatever their type: these are the known ones, for the docs and the page. */
export const QueuedEvent = z.looseObject({
  type: z.literal("queued"),
  queue_position: z.int().positive().describe("Place in line, 1 = next (the GPU server's own queue, or the gateway's while it waits for a slot)"),
  position: z.int().positive().optional().describe("The same, in the gateway's own queued events (kept for clients of its first version)"),
  request_id: z.string().optional().describe("The GPU server's id of the request (its queued event only)"),
}).meta({ id: "QueuedEvent" });
export const ProgressEvent = z.looseObject({
  type: z.literal("progress"),
  step: z.number(),
  total_steps: z.number(),
  progress: z.number().optional().describe("Percent done, 0–100 (the genuine server sends an integer; its last event comes twice)"),
}).meta({ id: "ProgressEvent" });
export const CompleteEvent = GenerateResponse.extend({ type: z.literal("complete") }).meta({ id: "CompleteEvent" });
export const ErrorEvent = z.looseObject({
  type: z.literal("error"),
  message: z.string(),
  kind: z.string().optional().describe("The error table's kind (upstream_timeout, shutting_down, …); absent only on an error event the GPU server sent itself, relayed as it came"),
}).meta({ id: "ErrorEvent" });
export const StreamEvent = z.discriminatedUnion("type", [QueuedEvent, ProgressEvent, CompleteEvent, ErrorEvent]).meta({ id: "StreamEvent" });
export type StreamEvent = z.output<typeof StreamEvent>;

/** GET /health of the GPU server; every field may be missing on older servers, and others are passed on. */
export const UpstreamHealth = z.looseObject({
  status: z.string().catch("unknown").default("unknown"),
  model_loaded: z.boolean().nullable().catch(null).default(null),
  cuda_available: z.boolean().nullable().catch(null).default(null),
  current_queue_size: z.number().nullable().catch(null).default(null),
  active_generations: z.number().nullable().catch(null).default(null),
  available_slots: z.number().nullable().catch(null).default(null),
}).meta({ id: "UpstreamHealth" });
export type UpstreamHealth = z.output<typeof UpstreamHealth>;

/**
 * Whether a GPU server that answered /health can generate: healthy (or silent,
 * as an older server), with neither model nor CUDA reported missing. The genuine
 * server says "healthy" without CUDA, then answers every generation 503.
 */
export function canGenerate(health: UpstreamHealth): boolean {
  return (health.status === "healthy" || health.status === "unknown") && health.model_loaded !== false && health.cuda_available !== false;
}

/** One entry of a 422 `detail` list, in FastAPI's shape (pydantic 2's, without its `url`). */
export const ValidationDetail = z.object({
  type: z.string(),
  loc: z.array(z.union([z.string(), z.number()])),
  msg: z.string(),
  input: z.unknown().optional().describe("The value that was refused (the whole body for a missing field)"),
  ctx: z.record(z.string(), z.unknown()).optional().describe('The rule\'s bound, e.g. {"le": 2048}'),
}).meta({ id: "ValidationDetail" });
export type ValidationDetail = z.output<typeof ValidationDetail>;

export type Validated<T> = { ok: true; data: T } | { ok: false; detail: ValidationDetail[] };

const schemas = new Map<number, typeof GenerateRequest>([[SIZE_MULTIPLE_DEFAULT, GenerateRequest]]);

/**
 * Validates a generate body as FastAPI with pydantic 2 does (lax: "512" and
 * 1024.0 are ints), plus the rules the genuine pipeline applies later (sizes a
 * multiple of SIZE_MULTIPLE, a seed it takes, a finite guidance), in FastAPI's 422 entries.
 */
export function validateGenerateRequest(body: unknown, { sizeMultiple = SIZE_MULTIPLE_DEFAULT }: { sizeMultiple?: number } = {}): Validated<GenerateRequest> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { ok: false, detail: [{ type: "model_attributes_type", loc: ["body"], msg: "Input should be a valid dictionary or object to extract fields from", input: plain(body) }] };
  }
  const fields = body as Record<string, unknown>;
  const read: Record<string, unknown> = {};
  const refused = new Map<string, ValidationDetail>();
  for (const [field, lax] of Object.entries(LAX_READ)) {
    const input = Object.hasOwn(fields, field) ? fields[field] : undefined;
    if (input === undefined) continue;
    const result = lax(input);
    if ("refusal" in result) refused.set(field, { type: result.refusal.type, loc: ["body", field], msg: result.refusal.msg, input: plain(input) });
    else read[field] = result.value;
  }
  let schema = schemas.get(sizeMultiple);
  if (!schema) schemas.set(sizeMultiple, (schema = requestSchema(sizeMultiple)));
  const result = schema.safeParse(read);
  if (result.success && refused.size === 0) return { ok: true, data: result.data };
  const broken = new Map(refused);
  for (const issue of result.error?.issues ?? []) {
    const field = String(issue.path[0]);
    // One entry per field, as pydantic gives; zod checks the bounds before the multiple, as the server would.
    if (!broken.has(field)) broken.set(field, toDetail(issue, field, fields));
  }
  const order = Object.keys(LAX_READ);
  return { ok: false, detail: [...broken.entries()].sort(([a], [b]) => order.indexOf(a) - order.indexOf(b)).map(([, detail]) => detail) };
}

/** Pydantic's entry for a rule broken after the lax reading; `input` is what the client sent. */
function toDetail(issue: z.core.$ZodIssue, field: string, body: Record<string, unknown>): ValidationDetail {
  const loc = ["body", field];
  const input = plain(body[field]);
  switch (issue.code) {
    case "invalid_type":
      // What the lax reading let through is of the right type: either nothing was sent, or a float is not finite.
      return input === undefined ? { type: "missing", loc, msg: "Field required", input: plain(body) } : { type: FINITE_NUMBER.type, loc, msg: FINITE_NUMBER.msg, input };
    case "too_small":
      if (issue.origin === "string") {
        return { type: "string_too_short", loc, msg: `String should have at least ${plural(issue.minimum, "character")}`, input, ctx: { min_length: Number(issue.minimum) } };
      }
      return { type: "greater_than_equal", loc, msg: `Input should be greater than or equal to ${issue.minimum}`, input, ctx: { ge: Number(issue.minimum) } };
    case "too_big":
      if (issue.origin === "string") {
        return { type: "string_too_long", loc, msg: `String should have at most ${plural(issue.maximum, "character")}`, input, ctx: { max_length: Number(issue.maximum) } };
      }
      return { type: "less_than_equal", loc, msg: `Input should be less than or equal to ${issue.maximum}`, input, ctx: { le: Number(issue.maximum) } };
    case "not_multiple_of":
      return { type: "multiple_of", loc, msg: `Input should be a multiple of ${issue.divisor}`, input, ctx: { multiple_of: Number(String(issue.divisor)) } };
    default:
      return { type: issue.code, loc, msg: issue.message, input };
  }
}

/** How much of a refused value a 422 echoes: containers this deep or wide are cut, as pydantic cuts the values it prints. */
const ECHO_DEPTH = 8;
const ECHO_ITEMS = 64;
const CUT = "…";

/**
 * The value as the client sent it, without the gateway's wrappers of number
 * text, for a 422's `input`: containers below ECHO_DEPTH become "…", and past
 * ECHO_ITEMS entries the rest becomes one "…", so an echo never grows with the
 * body's nesting (30,000 levels overflowed the stack of JSON.stringify).
 */
function plain(value: unknown, depth = 0): unknown {
  if (value instanceof JsonNumber) return value.value;
  if (typeof value !== "object" || value === null) return value;
  if (depth >= ECHO_DEPTH) return CUT;
  if (Array.isArray(value)) {
    const items = value.slice(0, ECHO_ITEMS).map((item: unknown) => plain(item, depth + 1));
    return value.length > ECHO_ITEMS ? [...items, CUT] : items;
  }
  const entries = Object.entries(value);
  const kept = entries.slice(0, ECHO_ITEMS).map(([key, field]) => [key, plain(field, depth + 1)]);
  if (entries.length > ECHO_ITEMS) kept.push([CUT, CUT]);
  return Object.fromEntries(kept);
}

function plural(count: number | bigint, noun: string): string {
  return `${count} ${noun}${count === 1 || count === 1n ? "" : "s"}`;
}
