/**
 * The bodies the gateway answers with and documents: the handlers check
 * theirs against them (`satisfies`), and the OpenAPI document shows them. The
 * requests it reads, and the GPU server's answers, are lib/schemas.ts's.
 */
import { z } from "zod";
import { ErrorEvent, GenerateRequest, ProgressEvent, QueuedEvent, SIZE_MULTIPLE_DEFAULT, UpstreamHealth, ValidationDetail } from "./schemas";

/** 200 of GET /api: what this service is (the original gateway's `GET /`). */
export const GatewayInfo = z.object({
  message: z.string(),
  version: z.string(),
  status: z.literal("running"),
  text2image_server_url: z.string().describe("The GPU server's URL, without credentials; with several servers, their URLs joined by commas"),
  mode: z.literal("gateway"),
  api_key_required: z.boolean().default(false).describe("Whether /api/generate and /api/generate-stream need an API key (GATEWAY_API_KEYS is set)"),
  size_multiple: z.int().positive().default(SIZE_MULTIPLE_DEFAULT).describe("Width and height must be multiples of it (SIZE_MULTIPLE)"),
  jobs: z.boolean().default(false).describe("Whether /api/jobs is served (JOBS; off on Vercel)"),
}).meta({ id: "GatewayInfo" });
export type GatewayInfo = z.output<typeof GatewayInfo>;

/** Why a GPU server's health could not be had: the gateway reports this in its place. */
export const ServerHealthFailure = z
  .object({
    status: z.string().describe('"unreachable" or "error_<reason>"'),
    error: z.string(),
  })
  .describe("The GPU server could not be asked");
export type ServerHealthFailure = z.output<typeof ServerHealthFailure>;
const ServerHealth = z.union([UpstreamHealth, ServerHealthFailure]);

/** One GPU server behind the gateway, when several are configured. */
export const ServerState = z.object({
  url: z.string().describe("The server's URL, without credentials"),
  state: z.enum(["up", "ejected", "down"]).describe(
    '"up": in rotation; "ejected": taken out after EJECT_AFTER_FAILURES failures in a row, until a probe succeeds after `ejected_until`; "down": in rotation, but its latest probe failed or it did not say "healthy", so it is tried only when no "up" server has room',
  ),
  ejected_until: z.iso.datetime().nullable().describe("When the ejection period ends; null while in rotation"),
  in_flight: z.int().nonnegative().describe("Generations this gateway runs on it now"),
  max_concurrent: z.int().positive().describe("MAX_CONCURRENT_PER_SERVER"),
  available_slots: z.number().nullable().describe("From its latest /health answer"),
  consecutive_failures: z.int().nonnegative().describe(
    "Refused connections and 5xx answers in a row (of calls and probes), and lost connections and timeouts of calls",
  ),
  ejections: z.int().nonnegative().describe("Times it was ejected since the gateway started"),
  orphaned: z.int().nonnegative().describe(
    "Of its in_flight, generations whose client left (or timed out) that it may still be running: their slots stay taken until its load shows them done",
  ),
  health: ServerHealth.nullable().describe("Its latest /health answer (probed every HEALTH_INTERVAL); null before the first"),
});
export type ServerState = z.output<typeof ServerState>;

/** 200 of GET /api/health: the gateway's own state and the GPU server's. */
export const GatewayHealth = z.object({
  status: z.enum(["healthy", "degraded"]).describe(
    '"healthy" when the GPU server answers, says "healthy", and reports neither model_loaded nor cuda_available false (with several servers: when at least one in rotation does)',
  ),
  gateway: z.literal("running"),
  in_flight: z.int().nonnegative().describe("Generations running or queued on the GPU server through this gateway, orphaned ones included"),
  orphaned: z.int().nonnegative().describe(
    "Of in_flight, generations whose client left (or timed out) that the GPU server may still run: the genuine server runs every one to its end, so their slots are taken until its /health load shows them done (at most REQUEST_TIMEOUT)",
  ),
  queued: z.int().nonnegative().describe("Requests waiting for a slot"),
  max_concurrent: z.int().positive().describe("MAX_CONCURRENT_REQUESTS"),
  text2image_server: ServerHealth.describe(
    'The GPU server\'s own /health answer. With several servers, an aggregate of those in rotation that answered: status "healthy" if any is, model_loaded and cuda_available true if any is, queue, generations and available_slots summed',
  ),
  limiter: z.string().optional().describe(
    'Only with REDIS_URL: "redis" while one limit spans every gateway; "local (redis unreachable)" or "unavailable (redis unreachable)" while Redis is down (status is then "degraded")',
  ),
  servers: z.array(ServerState).optional().describe("Each GPU server, when several are configured (absent with one)"),
  shutting_down: z.literal(true).optional().describe('Present while draining after SIGTERM; status is then "degraded"'),
  storage_full: z.literal(true).optional().describe(
    'Present while the disk of DATA_DIR is full (a job could not keep its image): new jobs get 503 until it has room again; status is then "degraded"',
  ),
  jobs: z
    .object({
      store: z.enum(["sqlite", "redis"]).describe("JOB_STORE: SQLite under this gateway's DATA_DIR, or REDIS_URL's Redis"),
      shared: z.boolean().describe("Whether every gateway on the same Redis answers for every job (true with the redis store)"),
      reachable: z.boolean().optional().describe('The redis store only: false while its Redis is unreachable (job doors answer 503 store_unavailable; status is then "degraded")'),
      note: z.string().optional().describe("With REDIS_URL set but jobs kept per instance: how to share them"),
    })
    .optional()
    .describe("Only with REDIS_URL (and JOBS on): where jobs live, whether every gateway shares them"),
}).meta({ id: "GatewayHealth" });
export type GatewayHealth = z.output<typeof GatewayHealth>;

/** A job's image and what the GPU server said of it. */
export const JobOutput = z.object({
  image_url: z.string().describe("Where its bytes are: /api/images/<sha256>.<ext>, cached for good"),
  content_type: z.string().describe("The GPU server's type: image/jpeg by default, image/png when it is configured so"),
  bytes: z.int().nonnegative(),
  sha256: z.string().describe("Of the image's bytes: its ETag and its name"),
  width: z.int().nullable(),
  height: z.int().nullable(),
  seed: z.string().nullable().describe("The seed used, as its digits (it may be past 2^53)"),
  generation_time_ms: z.number().nullable(),
  image_id: z.string().nullable(),
}).meta({ id: "JobOutput" });

export type JobOutput = z.output<typeof JobOutput>;

/** A generation as a job (POST /api/jobs). */
export const Job = z.object({
  id: z.string().describe("128 random bits, base64url"),
  status: z.enum(["queued", "running", "succeeded", "failed", "canceled"]),
  created_at: z.iso.datetime(),
  started_at: z.iso.datetime().nullable().describe("When the GPU server was asked"),
  completed_at: z.iso.datetime().nullable(),
  queue_position: z.int().positive().nullable().describe("While queued: its place in line, 1 = next"),
  progress: z.object({ step: z.number(), total_steps: z.number() }).nullable().describe("While running: the GPU server's latest step"),
  output: JobOutput.nullable().describe("When succeeded"),
  error: z.object({ kind: z.string(), detail: z.string() }).nullable().describe("When failed: the error table's kind and detail, or gateway_restarted"),
  urls: z.object({ self: z.string(), cancel: z.string(), events: z.string() }),
  input: z.record(z.string(), z.unknown()).describe("The seven fields as sent to the GPU server"),
}).meta({ id: "Job" });

export type Job = z.output<typeof Job>;

/**
 * What GET /api/jobs/{id}/events sends: the GPU server's events as they came,
 * but `complete` is the job's output (its image by URL) and the job ends with
 * `complete`, `error` or `canceled`.
 */
export const JobEvent = z.discriminatedUnion("type", [
  QueuedEvent,
  ProgressEvent,
  z.looseObject({
    type: z.literal("retrying"),
    kind: z.string().describe("Why it was refused: upstream_status (the GPU server's 503), upstream_unavailable, …"),
    message: z.string(),
    retry_in_ms: z.int().nonnegative().describe("When it is tried again; the job is queued meanwhile"),
  }),
  z.looseObject({ type: z.literal("complete"), output: JobOutput }),
  ErrorEvent.extend({ kind: z.string().describe("The error table's kind, or gateway_restarted") }),
  z.looseObject({ type: z.literal("canceled") }),
]).meta({ id: "JobEvent" });
export type JobEvent = z.output<typeof JobEvent>;

export const JobList = z.object({ jobs: z.array(Job).describe("Newest first"), next: z.string().nullable().describe("`before` for the next page") }).meta({ id: "JobList" });

/** 200 of GET /api/metrics: the GPU server's own counters, free form. */
export const UpstreamMetrics = z.record(z.string(), z.unknown()).meta({ id: "UpstreamMetrics" });

const requestId = z.string().optional().describe("The request's id, as in the `x-request-id` header: quote it when reporting a problem");

/** Every error but a 422: `{"detail": "..."}`. */
export const ErrorBody = z.object({ detail: z.string(), request_id: requestId }).meta({ id: "ErrorBody" });

/** A 422: FastAPI's list of what is wrong with the request. */
export const ValidationErrorBody = z.object({ detail: z.array(ValidationDetail), request_id: requestId }).meta({ id: "ValidationErrorBody" });

// ---- the OpenAI Images API (/v1): what the gateway reads and answers, for its OpenAPI document

const ignored = z.string().optional().describe("Accepted and ignored: the GPU server has no such setting");
// The formats lib/upstream/image.ts converts to; written out, as the page's bundle takes these shapes and must not take sharp's module.
const OutputFormat = z.enum(["png", "jpeg", "webp"]);

/** The most images one request may ask for by default (MAX_IMAGES_PER_REQUEST). */
export const MAX_IMAGES_DEFAULT = 4;

const wholeNumber = (min: number, max: number, why = `must be a whole number from ${min} to ${max}`) =>
  z.int({ error: why }).min(min, { error: why }).max(max, { error: why });
const text = z.string({ error: "must be a string" });

/**
 * OpenAI's own fields of POST /v1/images/generations, as the gateway reads
 * them (lib/openai.ts parses with it; each refusal's message is the 400's):
 * null is taken as absent, as OpenAI's SDKs send it.
 */
export function openAIImageOptions(maxImages: number) {
  return z.object({
    model: text
      .nullish()
      .describe("Any name: the gateway has one model (IMAGE_MODEL_NAME), which makes them all, so the names apps send (dall-e-2, Open WebUI's default; dall-e-3; gpt-image-1, LibreChat's; gpt-image-2) work as they are; logged"),
    n: wholeNumber(1, maxImages, `must be a whole number from 1 to ${maxImages} (MAX_IMAGES_PER_REQUEST)`)
      .nullish()
      .default(1)
      .describe("How many images, 1 to MAX_IMAGES_PER_REQUEST (4 by default): one generation each, a fixed seed counting up; 1 with stream"),
    size: text.nullish().default("auto").describe('"WIDTHxHEIGHT" within the gateway\'s size rules, or "auto" (1024x1024)'),
    response_format: z.enum(["url", "b64_json"], { error: 'must be "url" or "b64_json"' }).nullish().describe(
      '"url" (the default, as DALL·E: an absolute URL in the image store, kept JOB_TTL) or "b64_json"; a gpt-image-* or chatgpt-image-* model, or a stream, answers b64_json by default, as OpenAI does',
    ),
    output_format: z.enum(OutputFormat.options, { error: 'must be "png", "jpeg" or "webp"' }).nullish().describe(
      "The image's format: converted (sharp) only when the GPU server's differs, stored under its own hash for a URL; left out, the GPU server's own (JPEG by default on the genuine server)",
    ),
    output_compression: wholeNumber(0, 100)
      .nullish()
      .describe("jpeg and webp quality for a conversion, 100 unless given; a png is refused. An image already in the asked format is passed as it is"),
    stream: z.boolean({ error: "must be true or false" }).nullish().default(false).describe(
      "OpenAI's image stream (server-sent events): keep-alive comments, then one image_generation.completed event, or an error event",
    ),
    partial_images: wholeNumber(0, 3).nullish().describe("0 to 3, accepted: the GPU server sends no preview image, so no partial_image event comes"),
    quality: text.nullish().default("auto").describe("Told back in the answer; the GPU server has no such setting"),
    background: text.nullish().default("auto").describe("Told back in the answer; the GPU server has no such setting"),
  });
}

/** POST /v1/images/generations, as the gateway reads it; other fields are ignored. */
export const OpenAIImagesRequest = z.looseObject({
  prompt: GenerateRequest.shape.prompt,
  ...openAIImageOptions(MAX_IMAGES_DEFAULT).shape,
  style: ignored,
  user: ignored,
  moderation: ignored,
  negative_prompt: GenerateRequest.shape.negative_prompt.describe("Extension: as /api/generate's"),
  seed: GenerateRequest.shape.seed.describe("Extension: as /api/generate's; with n > 1, the next images take the next seeds"),
  num_inference_steps: GenerateRequest.shape.num_inference_steps.describe("Extension: as /api/generate's"),
  guidance_scale: GenerateRequest.shape.guidance_scale.describe("Extension: as /api/generate's"),
}).meta({ id: "OpenAIImagesRequest" });

/** 200 of POST /v1/images/generations. */
export const OpenAIImagesResponse = z.object({
  created: z.int().describe("Unix seconds"),
  background: z.string().describe("As asked, or auto"),
  data: z.array(
    z.object({
      b64_json: z.string().optional().describe("The image, base64: the GPU server's own bytes, or converted to output_format"),
      url: z.string().optional().describe("PUBLIC_BASE_URL (else the request's origin) + /api/images/<sha256>.<ext>, signed with API keys"),
    }),
  ),
  output_format: OutputFormat.optional().describe("The images' format: as asked, or the GPU server's"),
  quality: z.string().describe("As asked, or auto"),
  size: z.string().describe("As generated, WIDTHxHEIGHT"),
}).meta({ id: "OpenAIImagesResponse" });

/** The one event of a 200 to `stream: true` (`event: image_generation.completed`); a failure is `event: error` with OpenAI's error object. */
export const OpenAIImageStreamEvent = z.object({
  type: z.literal("image_generation.completed"),
  b64_json: z.string().describe("The image, base64, in output_format"),
  created_at: z.int().describe("Unix seconds"),
  size: z.string().describe("As generated, WIDTHxHEIGHT"),
  quality: z.string().describe("As asked, or auto"),
  background: z.string().describe("As asked, or auto"),
  output_format: OutputFormat.optional().describe("As asked, or the GPU server's"),
  usage: z.object({}).loose().describe("No tokens are counted here: all zero"),
}).meta({ id: "OpenAIImageStreamEvent" });

/** Every /v1 error: OpenAI's shape, so its SDKs raise their typed errors. */
export const OpenAIErrorBody = z.object({
  error: z.object({
    message: z.string(),
    type: z.enum(["invalid_request_error", "rate_limit_error", "server_error"]),
    param: z.string().nullable().describe("The request field at fault"),
    code: z.string().nullable().describe("The gateway's own error code (invalid_api_key for a key)"),
  }),
}).meta({ id: "OpenAIErrorBody" });

/** 200 of GET /v1/models/{model}: the one model. */
export const OpenAIModel = z.object({ id: z.string().describe("IMAGE_MODEL_NAME"), object: z.literal("model"), created: z.int(), owned_by: z.string() }).meta({ id: "OpenAIModel" });

/** 200 of GET /v1/models. */
export const OpenAIModelList = z.object({ object: z.literal("list"), data: z.array(OpenAIModel) }).meta({ id: "OpenAIModelList" });
