/**
 * The one source of request and response shapes. Shared by the route handlers,
 * the upstream client and the page (so it must stay free of server-only code).
 */
import { z } from "zod";

export const PROMPT_MAX_CHARS = 2000;
export const SIZE_MIN = 256;
export const SIZE_MAX = 2048;
export const STEPS_MIN = 6;
export const STEPS_MAX = 12;

const size = z.int().min(SIZE_MIN).max(SIZE_MAX).default(1024);

export const GenerateRequest = z.object({
  prompt: z.string().min(1).max(PROMPT_MAX_CHARS),
  negative_prompt: z.string().max(PROMPT_MAX_CHARS).default(""),
  height: size,
  width: size,
  seed: z.int().default(-1),
  num_inference_steps: z.int().min(STEPS_MIN).max(STEPS_MAX).default(9),
  guidance_scale: z.number().default(0.0),
});
/** A validated request, every field present: exactly what is sent upstream. */
export type GenerateRequest = z.output<typeof GenerateRequest>;
export type GenerateRequestInput = z.input<typeof GenerateRequest>;

/** The upstream's 200 answer to /generate, as far as the gateway checks it. */
export const GenerateResponse = z.looseObject({
  image_base64: z.string().min(1),
  seed: z.number().optional(),
  generation_time_ms: z.number().optional(),
  width: z.number().optional(),
  height: z.number().optional(),
  image_id: z.string().nullish(),
});

/** Events of POST /api/generate-stream, one JSON object per SSE `data:` line. */
export const QueuedEvent = z.object({ type: z.literal("queued"), position: z.int().positive() });
export const ProgressEvent = z.looseObject({
  type: z.literal("progress"),
  step: z.number(),
  total_steps: z.number(),
  progress: z.number().optional(),
  message: z.string().optional(),
});
export const CompleteEvent = GenerateResponse.extend({ type: z.literal("complete") });
export const ErrorEvent = z.object({ type: z.literal("error"), message: z.string() });
export const StreamEvent = z.discriminatedUnion("type", [QueuedEvent, ProgressEvent, CompleteEvent, ErrorEvent]);
export type StreamEvent = z.output<typeof StreamEvent>;

/** GET /health of the GPU server; every field may be missing on older servers. */
export const UpstreamHealth = z.object({
  status: z.string().catch("unknown").default("unknown"),
  model_loaded: z.boolean().nullable().catch(null).default(null),
  cuda_available: z.boolean().nullable().catch(null).default(null),
  current_queue_size: z.number().nullable().catch(null).default(null),
  active_generations: z.number().nullable().catch(null).default(null),
  available_slots: z.number().nullable().catch(null).default(null),
});
export type UpstreamHealth = z.output<typeof UpstreamHealth>;

/** One entry of a 422 `detail` list, in FastAPI's shape. */
export interface ValidationDetail {
  loc: (string | number)[];
  msg: string;
  type: string;
}

export type Validated<T> = { ok: true; data: T } | { ok: false; detail: ValidationDetail[] };

/** Validates a generate request body; errors come in FastAPI's 422 shape and wording. */
export function validateGenerateRequest(body: unknown): Validated<GenerateRequest> {
  const result = GenerateRequest.safeParse(body, { reportInput: true });
  if (result.success) return { ok: true, data: result.data };
  // zod may report two issues for one field (2^60 breaks both the safe-integer
  // range and the maximum); FastAPI reports one, and the last is the tighter one.
  const byField = new Map<string, ValidationDetail>();
  for (const issue of result.error.issues) {
    byField.set(issue.path.join("."), toDetail(issue));
  }
  return { ok: false, detail: [...byField.values()] };
}

function toDetail(issue: z.core.$ZodIssue): ValidationDetail {
  const loc = ["body", ...issue.path.map((key) => (typeof key === "number" ? key : String(key)))];
  return { loc, ...describe(issue) };
}

/** Pydantic's error type and message for a zod issue, so clients see what FastAPI sent. */
function describe(issue: z.core.$ZodIssue): Omit<ValidationDetail, "loc"> {
  switch (issue.code) {
    case "invalid_type":
      if (issue.input === undefined) return { type: "missing", msg: "Field required" };
      if (issue.expected === "string") return { type: "string_type", msg: "Input should be a valid string" };
      if (issue.expected === "int" || isIntegerField(issue.path)) {
        return typeof issue.input === "number"
          ? { type: "int_from_float", msg: "Input should be a valid integer, got a number with a fractional part" }
          : { type: "int_type", msg: "Input should be a valid integer" };
      }
      if (issue.expected === "number") return { type: "float_type", msg: "Input should be a valid number" };
      return { type: "model_attributes_type", msg: "Input should be a valid dictionary or object to extract fields from" };
    case "too_small":
      return issue.origin === "string"
        ? { type: "string_too_short", msg: `String should have at least ${plural(issue.minimum, "character")}` }
        : { type: "greater_than_equal", msg: `Input should be greater than or equal to ${issue.minimum}` };
    case "too_big":
      return issue.origin === "string"
        ? { type: "string_too_long", msg: `String should have at most ${plural(issue.maximum, "character")}` }
        : { type: "less_than_equal", msg: `Input should be less than or equal to ${issue.maximum}` };
    default:
      return { type: issue.code, msg: issue.message };
  }
}

/** zod reports a string sent for an integer field as "expected number"; pydantic says integer. */
function isIntegerField(path: PropertyKey[]): boolean {
  const field: z.ZodType | undefined = GenerateRequest.shape[path[0] as keyof typeof GenerateRequest.shape];
  const inner = field instanceof z.ZodDefault ? field.unwrap() : field;
  return inner instanceof z.ZodNumber && inner.format === "safeint";
}

function plural(count: number | bigint, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

// Bodies the gateway itself answers with. They describe what the handlers send
// (the handlers check against them with `satisfies`) and feed the OpenAPI document.

/** 200 of GET /api: what this service is (the seed's `GET /`). */
export const GatewayInfo = z.object({
  message: z.string(),
  version: z.string(),
  status: z.literal("running"),
  text2image_server_url: z
    .string()
    .describe("The GPU server's URL, without credentials; with several servers, their URLs joined by commas"),
  mode: z.literal("gateway"),
  api_key_required: z
    .boolean()
    .default(false)
    .describe("Whether /api/generate and /api/generate-stream need an API key (GATEWAY_API_KEYS is set)"),
});
export type GatewayInfo = z.output<typeof GatewayInfo>;

/** A GPU server's health as the gateway reports it: its own answer, or why it could not be asked. */
const ServerHealthFailure = z
  .object({
    status: z.string().describe('"unreachable" or "error_<reason>"'),
    error: z.string(),
  })
  .describe("The GPU server could not be asked");

/** One GPU server behind the gateway, when several are configured. */
export const ServerState = z.object({
  url: z.string().describe("The server's URL, without credentials"),
  state: z
    .enum(["up", "ejected", "down"])
    .describe(
      '"up": in rotation; "ejected": taken out after EJECT_AFTER_FAILURES failures in a row, until a probe succeeds after `ejected_until`; "down": in rotation, but its latest probe failed or it did not say "healthy", so it is tried only when no "up" server has room',
    ),
  ejected_until: z.iso.datetime().nullable().describe("When the ejection period ends; null while in rotation"),
  in_flight: z.int().nonnegative().describe("Generations this gateway runs on it now"),
  max_concurrent: z.int().positive().describe("MAX_CONCURRENT_PER_SERVER"),
  available_slots: z.number().nullable().describe("From its latest /health answer"),
  consecutive_failures: z
    .int()
    .nonnegative()
    .describe("Refused connections and 5xx answers in a row (of calls and probes), and lost connections and timeouts of calls"),
  ejections: z.int().nonnegative().describe("Times it was ejected since the gateway started"),
  health: z
    .union([UpstreamHealth, ServerHealthFailure])
    .nullable()
    .describe("Its latest /health answer (probed every HEALTH_INTERVAL); null before the first"),
});
export type ServerState = z.output<typeof ServerState>;

/** 200 of GET /api/health: the gateway's own state and the GPU server's. */
export const GatewayHealth = z.object({
  status: z
    .enum(["healthy", "degraded"])
    .describe('"healthy" when the GPU server answers and says "healthy" (with several servers: when at least one in rotation does)'),
  gateway: z.literal("running"),
  in_flight: z.int().nonnegative().describe("Generations running on the GPU server through this gateway"),
  queued: z.int().nonnegative().describe("Requests waiting for a slot"),
  max_concurrent: z.int().positive().describe("MAX_CONCURRENT_REQUESTS"),
  text2image_server: z
    .union([
      UpstreamHealth,
      z
        .object({
          status: z.string().describe('"unreachable" or "error_<reason>"'),
          error: z.string(),
        })
        .describe("The GPU server could not be asked"),
    ])
    .describe(
      'The GPU server\'s own /health answer. With several servers, an aggregate of those in rotation that answered: status "healthy" if any is, model_loaded and cuda_available true if any is, queue, generations and available_slots summed',
    ),
  limiter: z
    .string()
    .optional()
    .describe(
      'Only with REDIS_URL: "redis" while one limit spans every gateway; "local (redis unreachable)" or "unavailable (redis unreachable)" while Redis is down (status is then "degraded")',
    ),
  servers: z.array(ServerState).optional().describe("Each GPU server, when several are configured (absent with one)"),
  shutting_down: z.literal(true).optional().describe('Present while draining after SIGTERM; status is then "degraded"'),
});
export type GatewayHealth = z.output<typeof GatewayHealth>;

/** 200 of GET /api/metrics: the GPU server's own counters, free form. */
export const UpstreamMetrics = z.record(z.string(), z.unknown());

/** One entry of a 422 `detail` list; the schema of the `ValidationDetail` interface above. */
export const ValidationDetail = z.object({
  loc: z.array(z.union([z.string(), z.number()])),
  msg: z.string(),
  type: z.string(),
}) satisfies z.ZodType<ValidationDetail>;

const requestId = z.string().optional().describe("The request's id, as in the `x-request-id` header: quote it when reporting a problem");

/** Every error but a 422: `{"detail": "..."}`. */
export const ErrorBody = z.object({ detail: z.string(), request_id: requestId });

/** A 422: FastAPI's list of what is wrong with the request. */
export const ValidationErrorBody = z.object({ detail: z.array(ValidationDetail), request_id: requestId });
