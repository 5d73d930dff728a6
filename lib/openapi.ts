/**
 * The gateway's OpenAPI 3.1 document. Only the skeleton is written here: body
 * schemas come from lib/schemas.ts (requests) and lib/api-shapes.ts (answers),
 * error examples from lib/errors.ts, and every
 * example is checked against its schema as the document is built, so none can
 * drift from what the handlers do.
 */
import { z } from "zod";
import packageJson from "../package.json";
import { parseConfig } from "./config";
import { fail, openAiError } from "./errors";
import type { GatewayError } from "./errors";
import { ROUTES } from "./routes";
import type { RouteEntry } from "./routes";
import { CompleteEvent, ErrorEvent, GenerateRequest, GenerateResponse, ProgressEvent, QueuedEvent, StreamEvent, UpstreamHealth, ValidationDetail, validateGenerateRequest } from "./schemas";
import { ErrorBody, GatewayHealth, GatewayInfo, UpstreamMetrics, ValidationErrorBody, Job, JobEvent, JobList, JobOutput, OpenAIErrorBody, OpenAIImagesRequest, OpenAIImagesResponse, OpenAIImageStreamEvent, OpenAIModel, OpenAIModelList } from "./api-shapes";

export type JsonSchema = Record<string, unknown>;

export interface Example {
  summary: string;
  value: unknown;
  /** On request examples: the status the gateway answers this body with. */
  "x-expected-status"?: number;
}

export interface MediaType {
  schema: JsonSchema;
  examples?: Record<string, Example>;
}

export interface ResponseObject {
  description: string;
  headers?: Record<string, { $ref: string }>;
  content?: Record<string, MediaType>;
}

export interface Operation {
  operationId: string;
  summary: string;
  description: string;
  tags: string[];
  requestBody?: { required: true; content: Record<string, MediaType> };
  parameters?: { name: string; in: "path" | "query" | "header"; required?: boolean; description: string; schema: JsonSchema }[];
  responses: Record<string, ResponseObject>;
  /** Alternatives; `{}` among them makes the key optional (needed only when GATEWAY_API_KEYS is set). */
  security?: Record<string, string[]>[];
}

export type Method = "get" | "post";
export type PathItem = Partial<Record<Method, Operation>>;

export interface OpenApiDocument {
  openapi: "3.1.0";
  info: { title: string; version: string; description: string };
  tags: { name: string; description: string }[];
  paths: Record<string, PathItem>;
  components: {
    schemas: Record<string, JsonSchema>;
    headers: Record<string, { description: string; schema: JsonSchema; example?: string }>;
    securitySchemes: Record<string, { type: "http"; scheme: "bearer"; description: string } | { type: "apiKey"; in: "header"; name: string; description: string }>;
  };
}

/** Each zod schema of the document, under its component name. */
const REQUEST_SCHEMAS = { GenerateRequest, OpenAIImagesRequest };
const RESPONSE_SCHEMAS = {
  GatewayInfo,
  GatewayHealth,
  UpstreamHealth,
  UpstreamMetrics,
  GenerateResponse,
  StreamEvent,
  QueuedEvent,
  ProgressEvent,
  CompleteEvent,
  ErrorEvent,
  ErrorBody,
  ValidationErrorBody,
  ValidationDetail,
  Job,
  JobOutput,
  JobEvent,
  JobList,
  OpenAIImagesResponse,
  OpenAIImageStreamEvent,
  OpenAIErrorBody,
  OpenAIModel,
  OpenAIModelList,
};
type SchemaName = keyof typeof REQUEST_SCHEMAS | keyof typeof RESPONSE_SCHEMAS;

const COMPONENT_PREFIX = "#/components/schemas/";

function ref(name: SchemaName): JsonSchema {
  return { $ref: `${COMPONENT_PREFIX}${name}` };
}

/** zod 4's JSON Schemas: requests as read (defaults optional), answers as written; nested ones as `$ref`s. */
function componentSchemas(): Record<string, JsonSchema> {
  return { ...toJsonSchemas(REQUEST_SCHEMAS, "input"), ...toJsonSchemas(RESPONSE_SCHEMAS, "output") };
}

/** The int fields, bigints, state their JSON Schema in metadata, whose `default` zod leaves out: it is put back. */
export const JSON_SCHEMA_OPTIONS = {
  target: "draft-2020-12",
  unrepresentable: "any",
  override: ({ zodSchema, jsonSchema }) => {
    const stated = z.globalRegistry.get(zodSchema)?.default;
    if (stated !== undefined && jsonSchema.default === undefined) jsonSchema.default = stated;
  },
} satisfies Parameters<typeof z.toJSONSchema>[1];

function toJsonSchemas(named: Record<string, z.ZodType>, io: "input" | "output"): Record<string, JsonSchema> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(named)) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, { ...JSON_SCHEMA_OPTIONS, io, uri: (id) => `${COMPONENT_PREFIX}${id}` });
  // `$schema` is the document's dialect already; a fragment-only `$id` is not a valid JSON Schema id.
  return Object.fromEntries(
    Object.entries(schemas).map(([id, schema]) => {
      const component: JsonSchema = { ...schema };
      delete component.$schema;
      delete component.$id;
      return [id, component];
    }),
  );
}

/** An example body, checked against its schema now rather than found wrong by a reader. */
function checked(schema: z.ZodType, summary: string, value: unknown): Example {
  schema.parse(value);
  return { summary, value };
}

const defaults = parseConfig({});
const DEFAULT_SERVER = defaults.serverUrl.href.replace(/\/$/, "");
/** A 1x1 JPEG, the genuine server's default format (emulator/jpeg.ts made it). */
const TINY_JPEG =
  "data:image/jpeg;base64,/9j/4AAQSkZJRgABAQAAAQABAAD/2wCEAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRQBAwQEBQQFCQUFCRQNCw0UFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFP/AABEIAAEAAQMBEQACEQEDEQH/xAGiAAABBQEBAQEBAQAAAAAAAAAAAQIDBAUGBwgJCgsQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+gEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoLEQACAQIEBAMEBwUEBAABAncAAQIDEQQFITEGEkFRB2FxEyIygQgUQpGhscEJIzNS8BVictEKFiQ04SXxFxgZGiYnKCkqNTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqCg4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2dri4+Tl5ufo6ery8/T19vf4+fr/2gAMAwEAAhEDEQA/AOTr8UP6pP/Z";

// ---------------------------------------------------------------- requests

interface RequestCase {
  summary: string;
  value: unknown;
  status: 200 | 400 | 422;
}

/** Example generate bodies with the status they get; an invalid one's key recurs in that error's examples, with the computed `detail`. */
const GENERATE_CASES = {
  promptOnly: {
    summary: "Only a prompt: the defaults fill in the rest",
    value: { prompt: "a red fox in snow" },
    status: 200,
  },
  everyField: {
    summary: "Every field",
    value: {
      prompt: "a lighthouse at dusk, oil painting",
      negative_prompt: "blurry, text, watermark",
      height: 512,
      width: 768,
      seed: 42,
      num_inference_steps: 8,
      guidance_scale: 0.0,
    },
    status: 200,
  },
  unknownFieldDropped: {
    summary: "A small image; the unknown field `style` is dropped",
    value: { prompt: "a paper boat on a pond", width: 256, height: 256, style: "watercolor" },
    status: 200,
  },
  widthTooLarge: {
    summary: "Invalid (422): width above the maximum",
    value: { prompt: "a red fox in snow", width: 4096 },
    status: 422,
  },
  promptMissing: {
    summary: "Invalid (422): no prompt",
    value: { negative_prompt: "blurry" },
    status: 422,
  },
  stepsNotInteger: {
    summary: "Invalid (422): steps not a whole number, prompt empty",
    value: { prompt: "", num_inference_steps: 7.5 },
    status: 422,
  },
  notAnObject: {
    summary: "Invalid (400): a JSON array, not an object",
    value: ["a red fox in snow"],
    status: 400,
  },
} satisfies Record<string, RequestCase>;

/** What the gateway answers a generate body with, by the functions it uses to decide. */
function expectedError(value: unknown): GatewayError | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return fail.invalidBody();
  const result = validateGenerateRequest(value);
  return result.ok ? undefined : fail.validation(result.detail);
}

/** The generate body's examples; a valid one is answered `accepted` (a job: 202). */
function generateRequestBody(accepted = 200): NonNullable<Operation["requestBody"]> {
  const examples: Record<string, Example> = {};
  for (const [key, { summary, value, status }] of Object.entries(GENERATE_CASES)) {
    const actual = expectedError(value)?.status ?? 200;
    if (actual !== status) throw new Error(`OpenAPI example ${key} is documented as ${status} but would get ${actual}`);
    examples[key] = { summary, value, "x-expected-status": status === 200 ? accepted : status };
  }
  return { required: true, content: { "application/json": { schema: ref("GenerateRequest"), examples } } };
}

/** The answers to the invalid request examples, under the same keys. */
function requestErrorExamples(status: number): Record<string, [string, GatewayError]> {
  const examples: Record<string, [string, GatewayError]> = {};
  for (const [key, { summary, value }] of Object.entries(GENERATE_CASES)) {
    const error = expectedError(value);
    if (error?.status === status) examples[key] = [summary, error];
  }
  return examples;
}

// ---------------------------------------------------------------- responses

type ErrorExamples = Record<string, [summary: string, error: GatewayError]>;

/** An error response whose examples are built by the error table, so their text cannot drift. */
function errorResponse(status: number, description: string, examples: ErrorExamples, headers?: ResponseObject["headers"]): ResponseObject {
  const body: Record<string, Example> = {};
  for (const [key, [summary, error]] of Object.entries(examples)) {
    if (error.status !== status) throw new Error(`OpenAPI example ${key} has status ${error.status}, not ${status}`);
    body[key] = { summary, value: { detail: error.detail } };
  }
  return {
    description,
    ...(headers ? { headers } : {}),
    content: { "application/json": { schema: ref(status === 422 ? "ValidationErrorBody" : "ErrorBody"), examples: body } },
  };
}

/** An error of the /v1 routes, in OpenAI's shape, its examples made by openAiError() from the error table. */
function openAiErrorResponse(status: number, description: string, examples: ErrorExamples, headers?: ResponseObject["headers"]): ResponseObject {
  const body: Record<string, Example> = {};
  for (const [key, [summary, error]] of Object.entries(examples)) {
    const answer = openAiError(error);
    if (answer.status !== status) throw new Error(`OpenAPI example ${key} has status ${answer.status}, not ${status}`);
    body[key] = { summary, value: answer.body };
  }
  return { description, ...(headers ? { headers } : {}), content: { "application/json": { schema: ref("OpenAIErrorBody"), examples: body } } };
}

/** What any /v1 route may answer besides its own: no key or a wrong one, another method, a fault. */
function openAiCommonErrors(allow: string[]): Record<string, ResponseObject> {
  return {
    401: openAiErrorResponse(401, "With GATEWAY_API_KEYS: no key, or a wrong one (`Authorization: Bearer <key>`)", {
      missing: ["No key", fail.apiKeyMissing()],
      invalid: ["A wrong key", fail.apiKeyInvalid()],
    }),
    405: openAiErrorResponse(405, "Another method", { methodNotAllowed: ["Another method", fail.methodNotAllowed(allow.includes("GET") ? "POST" : "GET", allow)] }, { Allow: ALLOW }),
    500: openAiErrorResponse(500, "An unexpected fault in the gateway (logged)", { internal: ["Unexpected fault", fail.internal(null)] }),
  };
}

/** The generate answer asked for with Accept: image/png, image/jpeg or image/*: the image's own bytes and type. */
function withImageBytes(response: ResponseObject): ResponseObject {
  const binary: MediaType = { schema: { type: "string", format: "binary" } };
  return {
    ...response,
    description: `${response.description}; with \`Accept: image/png\`, \`image/jpeg\` or \`image/*\` preferred to JSON, the image's own bytes and type (the GPU server's: JPEG by default), its fields in \`X-Seed\`, \`X-Generation-Time-Ms\`, \`X-Image-Id\` and \`X-Image-Sha256\``,
    content: { ...response.content, "image/jpeg": binary, "image/png": binary },
  };
}

function jsonResponse(description: string, schema: SchemaName, examples: Record<string, Example>): ResponseObject {
  return { description, content: { "application/json": { schema: ref(schema), examples } } };
}

const RETRY_AFTER = { $ref: "#/components/headers/RetryAfter" };
const ALLOW = { $ref: "#/components/headers/Allow" };
const RATE_LIMIT_HEADERS = {
  "RateLimit-Limit": { $ref: "#/components/headers/RateLimitLimit" },
  "RateLimit-Remaining": { $ref: "#/components/headers/RateLimitRemaining" },
  "RateLimit-Reset": { $ref: "#/components/headers/RateLimitReset" },
};
/** The generate endpoints: open, or with one of the two key schemes when GATEWAY_API_KEYS is set. */
const OPTIONAL_API_KEY: Record<string, string[]>[] = [{}, { bearerKey: [] }, { apiKeyHeader: [] }];

const JOBS_ALLOW = ["GET", "HEAD", "POST"];
const JOB_ID = { name: "id", in: "path" as const, required: true, description: "The job's id", schema: { type: "string" } };

function notFoundError(): Record<string, ResponseObject> {
  return { 404: errorResponse(404, "No such job or image, or not the caller's.", { notFound: ["Unknown id", fail.noSuchJob("k3JcUnknown")] }), ...jobsOffError() };
}

/** Every jobs and images path, when JOBS=false. */
function jobsOffError(): Record<string, ResponseObject> {
  return { 501: errorResponse(501, "Jobs are off on this gateway (JOBS=false, the default on Vercel).", { jobsOff: ["JOBS=false", fail.jobsOff()] }) };
}

/** Answers any route can give: another method (405 with `Allow`) and an unexpected fault (500). */
function commonErrors(method: Method, allow = method === "get" ? ["GET", "HEAD"] : ["POST"]): Record<string, ResponseObject> {
  const other = ["POST", "GET", "DELETE"].find((candidate) => !allow.includes(candidate)) ?? "DELETE";
  return {
    405: errorResponse(
      405,
      `Another method than ${allow.join(" or ")} on this path; \`Allow\` lists the ones served.`,
      { methodNotAllowed: [`${other} instead of ${allow.join(" or ")}`, fail.methodNotAllowed(other, allow)] },
      { Allow: ALLOW },
    ),
    500: errorResponse(500, "An unexpected fault in the gateway (logged; no internals are returned).", {
      internal: ["Unexpected fault", fail.internal(null)],
    }),
  };
}

/** Every failure of a generation request before an answer starts. */
function generateErrors(allow?: string[], moreUnavailable: ErrorExamples = {}): Record<string, ResponseObject> {
  const upstreamFault = fail.upstreamStatus(500, "CUDA out of memory");
  return {
    400: errorResponse(400, "The body is not JSON, or not a JSON object.", {
      ...requestErrorExamples(400),
      notJson: ["Malformed JSON", fail.invalidJson(jsonParseError('{"prompt": "a red fox"'))],
      empty: ["Empty body", fail.invalidJson("the body is empty")],
    }),
    401: errorResponse(
      401,
      "GATEWAY_API_KEYS is set and the request has no key, or not a valid one (`WWW-Authenticate` says how to send it).",
      { missing: ["No key sent", fail.apiKeyMissing()], invalid: ["A key not in GATEWAY_API_KEYS", fail.apiKeyInvalid()] },
      { "WWW-Authenticate": { $ref: "#/components/headers/WWWAuthenticate" } },
    ),
    403: errorResponse(403, "A browser request from a web origin that CORS_ORIGINS does not list.", {
      foreignOrigin: ["From another site", fail.originNotAllowed()],
    }),
    ...commonErrors("post", allow),
    413: errorResponse(413, "The body is over MAX_BODY_BYTES (counted while reading).", {
      tooLarge: [`Over the default limit of ${defaults.maxBodyBytes} bytes`, fail.payloadTooLarge(defaults.maxBodyBytes)],
    }),
    415: errorResponse(415, "`Content-Type` is not JSON (none at all is taken as JSON).", {
      textPlain: ["Sent as text/plain", fail.unsupportedMediaType("text/plain")],
    }),
    422: errorResponse(422, "A field breaks a rule: FastAPI's list of `{loc, msg, type}`, one entry per field.", requestErrorExamples(422)),
    429: errorResponse(
      429,
      "RATE_LIMIT_PER_MINUTE (images a minute) is set and this key (or client IP) used it up; `Retry-After` says when one more fits. Every admitted answer carries the RateLimit-* fields too.",
      { rateLimited: ["Over 60 per minute", fail.rateLimited(60, 7, { "RateLimit-Limit": "60", "RateLimit-Remaining": "0", "RateLimit-Reset": "7" })] },
      { "Retry-After": RETRY_AFTER, ...RATE_LIMIT_HEADERS },
    ),
    500: errorResponse(500, "The GPU server failed (its status is passed on), or an unexpected fault in the gateway.", {
      upstream: ["The GPU server answered 500", upstreamFault],
      internal: ["Unexpected fault in the gateway", fail.internal(null)],
    }),
    502: errorResponse(502, "The GPU server's connection broke, or its answer is not a valid result.", {
      connectionLost: ["Connection reset or lost", fail.upstreamConnection(null)],
      badResponse: ["A 200 without an image", fail.upstreamBadResponse("no image_base64 in the answer")],
      tooLarge: ["Answer over MAX_RESPONSE_BYTES", fail.upstreamTooLarge(defaults.maxResponseBytes, null)],
    }),
    503: errorResponse(
      503,
      "No capacity: the gateway's queue is full or no slot became free in time (with `Retry-After`), it is shutting down (with `Connection: close`), its Redis limiter is unreachable in REDIS_FAILURE_MODE=closed, the GPU server is unreachable, or it answered 503 itself (its own detail).",
      {
        queueFull: ["MAX_QUEUE requests already waiting", fail.queueFull()],
        queueTimeout: ["No slot within QUEUE_TIMEOUT", fail.queueTimeout(defaults.queueTimeoutMs)],
        shuttingDown: ["Draining after SIGTERM", fail.shuttingDown()],
        limiterUnavailable: ["Redis unreachable, REDIS_FAILURE_MODE=closed", fail.limiterUnavailable()],
        refused: ["GPU server refuses connections", fail.upstreamRefused(DEFAULT_SERVER, null)],
        hostNotFound: ["GPU server's host name not found", fail.upstreamUnresolvable(DEFAULT_SERVER, null)],
        noServer: ["Several GPU servers, every one ejected or refusing connections", fail.noServerAvailable()],
        upstreamBusy: ["The GPU server's own 503", fail.upstreamStatus(503, "Queue is full")],
        ...moreUnavailable,
      },
      { "Retry-After": RETRY_AFTER },
    ),
    504: errorResponse(504, "The GPU server did not answer within REQUEST_TIMEOUT, or answered 504 itself.", {
      timeout: ["No answer within REQUEST_TIMEOUT", fail.upstreamTimeout(defaults.requestTimeoutMs, null)],
      connectTimeout: ["No connection in time", fail.upstreamConnectTimeout(DEFAULT_SERVER, null)],
      upstreamTimeout: ["The GPU server's own 504", fail.upstreamStatus(504, "Generation timed out")],
    }),
    default: errorResponse(429, "Any other error status of the GPU server, passed on with its detail.", {
      upstreamStatus: ["The GPU server answered 429", fail.upstreamStatus(429, "Too many requests")],
    }),
  };
}

function jsonParseError(text: string): string {
  try {
    JSON.parse(text);
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
  throw new Error(`${text} is valid JSON`);
}

/** A text/event-stream as a sequence of `{data}` events: OpenAPI 3.2's sequential media types, which Scalar renders as SSE. */
function eventStreamSchema(event: SchemaName = "StreamEvent"): JsonSchema {
  return {
    type: "array",
    items: {
      type: "object",
      properties: { data: { ...ref(event), description: "The JSON of one `data:` line" } },
      required: ["data"],
    },
  };
}

/** Whole streams, each event checked against StreamEvent. */
function streamExamples(image: Record<string, unknown>): Record<string, Example> {
  const stream = (summary: string, events: unknown[]): Example => ({
    summary,
    value: events.map((event) => ({ data: checked(StreamEvent, summary, event).value })),
  });
  const progress = (step: number) => ({ type: "progress", step, total_steps: 9, progress: Math.trunc((step / 9) * 100) });
  return {
    completed: stream("Queued, then step by step to the image (the genuine server's events, relayed unchanged)", [
      { type: "queued", queue_position: 1, request_id: "4b96fb7d-9eed-4ecd-9393-bec96723ea20" },
      progress(1),
      progress(2),
      progress(9),
      progress(9),
      { type: "complete", ...image },
    ]),
    waited: stream("Waited for a gateway slot first (the gateway's own queued events), then the GPU server's", [
      { type: "queued", queue_position: 2, position: 2 },
      { type: "queued", queue_position: 1, position: 1 },
      { type: "queued", queue_position: 1, request_id: "0c6f8e63-51d9-4f4e-9a8e-2c5d3f1b7a90" },
      progress(1),
    ]),
    failed: stream("Failed after it started", [progress(1), { type: "error", message: fail.upstreamConnection(null).message }]),
  };
}

/** A GET /api/health answer with the genuine server's fields, as an example. */
function healthExample(gateway: Record<string, unknown>, server: Record<string, unknown>): Record<string, unknown> {
  return {
    status: "healthy",
    gateway: "running",
    in_flight: 0,
    queued: 0,
    max_concurrent: defaults.maxConcurrent,
    orphaned: 0,
    ...gateway,
    text2image_server: {
      status: "healthy",
      model_loaded: true,
      cuda_available: true,
      cuda_device: "NVIDIA GeForce RTX 4090",
      current_queue_size: 0,
      active_generations: 0,
      available_slots: 2,
      ...server,
    },
  };
}

// ---------------------------------------------------------------- operations

interface Endpoint {
  /** Its path, and the original gateway's path for the same handler, if any. */
  route: RouteEntry;
  method: Method;
  operation: Omit<Operation, "tags"> & { tag: Tag };
}

type Tag = "generation" | "service" | "openai";

/** OpenAI's edits and variations: a 400 whatever is sent, as the GPU server takes no input image. */
function imageInputEndpoint(route: RouteEntry, operationId: string, what: string): Endpoint {
  return {
    route,
    method: "post",
    operation: {
      operationId,
      summary: `OpenAI Images API: ${what} (not offered)`,
      description: "The GPU server makes images from a text prompt only and takes no input image, so this is OpenAI's 400 (`image_input_unsupported`, param `image`) whatever is sent; the body is not read.",
      tag: "openai",
      responses: {
        400: openAiErrorResponse(400, "No input image is taken here", { unsupported: ["Any request", fail.imageInputUnsupported(route.path)] }),
        ...openAiCommonErrors(["POST"]),
      },
    },
  };
}


const TAGS: OpenApiDocument["tags"] = [
  { name: "generation", description: "Generate images on the GPU server" },
  { name: "service", description: "The gateway and the GPU server's state" },
  { name: "openai", description: "OpenAI's Images API, for its SDKs and the apps built on them: base URL `http(s)://<gateway>/v1`" },
  {
    name: "original paths",
    description: "The original gateway's paths, kept for existing frontends: the same handlers and answers as under /api",
  },
];

function endpoints(): Endpoint[] {
  const sample = { image_base64: TINY_JPEG, seed: 1234567, generation_time_ms: 3480, width: 1024, height: 1024, image_id: "b0c1d2e3" };
  return [
    {
      route: ROUTES.info,
      method: "get",
      operation: {
        operationId: "getInfo",
        summary: "What this service is",
        description: "The original gateway's `GET /`. Credentials in the GPU server's URL are never shown.",
        tag: "service",
        responses: {
          200: jsonResponse("The gateway's name, version and GPU server", "GatewayInfo", {
            running: checked(GatewayInfo, "A running gateway", {
              message: "Text-to-Image API Gateway",
              version: packageJson.version,
              status: "running",
              text2image_server_url: DEFAULT_SERVER,
              mode: "gateway",
            }),
          }),
          ...commonErrors("get"),
        },
      },
    },
    {
      route: ROUTES.health,
      method: "get",
      operation: {
        operationId: "getHealth",
        summary: "Health of the gateway and the GPU server",
        description:
          "Always 200: `status` says whether the GPU server can generate. One upstream call (5 s timeout) serves all callers for about a second.",
        tag: "service",
        responses: {
          200: jsonResponse("The gateway's load and the GPU server's own health", "GatewayHealth", {
            healthy: checked(GatewayHealth, "GPU server up", healthExample({ in_flight: 1 }, { active_generations: 1, available_slots: 1 })),
            noCuda: checked(
              GatewayHealth,
              "The GPU server answers but cannot generate (every generation would get its 503 CUDA not available)",
              healthExample({ status: "degraded" }, { cuda_available: false, cuda_device: null }),
            ),
            orphans: checked(
              GatewayHealth,
              "Two clients left; the GPU server still runs their generations, which hold their slots",
              healthExample({ in_flight: 3, orphaned: 2 }, { current_queue_size: 2, active_generations: 1, available_slots: 1 }),
            ),
            unreachable: checked(GatewayHealth, "GPU server unreachable", {
              status: "degraded",
              gateway: "running",
              in_flight: 0,
              queued: 0,
              max_concurrent: defaults.maxConcurrent,
              orphaned: 0,
              text2image_server: { status: "unreachable", error: fail.upstreamRefused(DEFAULT_SERVER, null).message },
            }),
          }),
          ...commonErrors("get"),
        },
      },
    },
    {
      route: ROUTES.generate,
      method: "post",
      operation: {
        operationId: "generate",
        summary: "Generate an image",
        description:
          "Validates the body (nothing invalid reaches the GPU server), waits for a slot, sends all seven fields upstream and streams the GPU server's answer back unchanged.",
        tag: "generation",
        requestBody: generateRequestBody(),
        responses: {
          200: withImageBytes(
            jsonResponse("The GPU server's answer, byte for byte", "GenerateResponse", {
              image: checked(GenerateResponse, "A generated image (a real one is 1–8 MB of base64)", { ...sample, queue_wait_ms: 12 }),
            }),
          ),
          ...generateErrors(),
        },
      },
    },
    {
      route: ROUTES.generateStream,
      method: "post",
      operation: {
        operationId: "generateStream",
        summary: "Generate an image, with progress as server-sent events",
        description:
          "Validated and admitted as `POST /api/generate`. Errors before the stream starts are JSON errors with their status; after, the stream ends with an `error` event. Each event is one line `data: <json>` and a blank line: `queued` while waiting for a slot, `progress` per inference step, then `complete` (with the image) or `error`. Lines starting with `:` are keep-alive comments.",
        tag: "generation",
        requestBody: generateRequestBody(),
        responses: {
          200: {
            description:
              "A text/event-stream of `data:` lines, each one JSON event: `queued`, `progress`, then `complete` or `error`.",
            content: { "text/event-stream": { schema: eventStreamSchema(), examples: streamExamples(sample) } },
          },
          ...generateErrors(),
        },
      },
    },
    {
      route: ROUTES.metrics,
      method: "get",
      operation: {
        operationId: "getMetrics",
        summary: "The GPU server's metrics",
        description: "The GPU server's own `/metrics` JSON, passed through unchanged.",
        tag: "service",
        responses: {
          200: jsonResponse("The GPU server's counters, free form", "UpstreamMetrics", {
            counters: checked(UpstreamMetrics, "Counters of text2image_server.py", {
              total_requests: 120,
              successful_generations: 117,
              failed_generations: 3,
              average_generation_time_ms: 3410,
              current_queue_size: 0,
              active_generations: 1,
            }),
          }),
          ...commonErrors("get"),
          502: errorResponse(502, "The GPU server's metrics could not be had.", {
            refused: ["GPU server refuses connections", fail.metricsUnavailable(fail.upstreamRefused(DEFAULT_SERVER, null))],
            badResponse: ["Not JSON", fail.metricsUnavailable(fail.upstreamBadResponse("the answer is not JSON"))],
          }),
        },
      },
    },
    {
      route: ROUTES.gatewayMetrics,
      method: "get",
      operation: {
        operationId: "getGatewayMetrics",
        summary: "The gateway's own metrics",
        description:
          "Prometheus text exposition: requests by route and status, latency histograms (queue wait, upstream, total), in-flight and queued gauges, upstream errors by kind, rejections, client aborts, bytes sent, upstream up/down, and Node's process metrics.",
        tag: "service",
        responses: {
          200: {
            description: "Prometheus text format 0.0.4",
            content: {
              "text/plain": {
                schema: { type: "string" },
                examples: {
                  scrape: { summary: "An excerpt", value: 'gateway_requests_total{route="/api/generate",status="200"} 3\ngateway_in_flight 0\n' },
                },
              },
            },
          },
          ...commonErrors("get"),
        },
      },
    },
    {
      route: ROUTES.jobs,
      method: "post",
      operation: {
        operationId: "submitJob",
        summary: "Generate an image as a job",
        description:
          "Validated and admitted as `POST /api/generate`, but the generation lives as long as its job, not a connection: follow it at `urls.events`, read it at `urls.self`, fetch its image at `output.image_url`. `Idempotency-Key` (≤ 255 characters) gives back the same job for the same body (`Idempotent-Replayed: true`), a 422 for another; `Prefer: wait=N` (0–60 s) holds the answer until the job ends or N s pass.",
        tag: "generation",
        requestBody: generateRequestBody(202),
        responses: {
          200: jsonResponse("The job, finished within `Prefer: wait`", "Job", {}),
          202: jsonResponse("The job, not finished yet: running, or queued with its `queue_position`; `Location` is its URL", "Job", {}),
          ...generateErrors(JOBS_ALLOW, {
            storageFull: ["DATA_DIR's disk found full (health says storage_full)", fail.storageFull("the disk of DATA_DIR is full")],
            storeFull: ["MAX_JOBS kept, none finished", fail.jobStoreFull(100_000)],
          }),
          ...jobsOffError(),
        },
      },
    },
    {
      route: ROUTES.jobs,
      method: "get",
      operation: {
        operationId: "listJobs",
        summary: "The caller's jobs",
        description: "Newest first, `limit` (1–100, default 20) at a time; `before=<id>` gives the next page. With API keys, only the key's jobs.",
        tag: "generation",
        parameters: [
          { name: "limit", in: "query", required: false, description: "Jobs per page", schema: { type: "integer", minimum: 1, maximum: 100, default: 20 } },
          { name: "before", in: "query", required: false, description: "The `next` of the previous page", schema: { type: "string" } },
        ],
        responses: {
          200: jsonResponse("A page of jobs", "JobList", {}),
          400: errorResponse(400, "`limit` is not a whole number from 1 to 100.", { badLimit: ["limit=1.5", fail.invalidParameter("limit", "must be a whole number from 1 to 100")] }),
          ...jobsOffError(),
          ...commonErrors("get", JOBS_ALLOW),
        },
      },
    },
    {
      route: ROUTES.job,
      method: "get",
      operation: {
        operationId: "getJob",
        summary: "A job",
        description: "Unknown, expired and another caller's jobs alike are a 404.",
        tag: "generation",
        parameters: [JOB_ID],
        responses: { 200: jsonResponse("The job", "Job", {}), ...notFoundError(), ...commonErrors("get") },
      },
    },
    {
      route: ROUTES.jobCancel,
      method: "post",
      operation: {
        operationId: "cancelJob",
        summary: "Cancel a job",
        description: "Idempotent: a queued job leaves the queue and never reaches the GPU; a running one has its upstream call aborted; a finished one is returned unchanged.",
        tag: "generation",
        parameters: [JOB_ID],
        responses: { 200: jsonResponse("The job, canceled unless it had finished", "Job", {}), ...notFoundError(), ...commonErrors("post") },
      },
    },
    {
      route: ROUTES.jobEvents,
      method: "get",
      operation: {
        operationId: "followJob",
        summary: "A job's events, as server-sent events",
        description:
          "Each event has an `id:` line and one `data:` line: `queued`, `progress`, then a terminal `complete` (the output, image by URL), `error` or `canceled`, after which the stream ends. Without `Last-Event-ID`, from the job's first event; with it, from just after that one.",
        tag: "generation",
        parameters: [JOB_ID, { name: "Last-Event-ID", in: "header", description: "The id of the last event received", schema: { type: "integer" } }],
        responses: {
          200: { description: "A text/event-stream", content: { "text/event-stream": { schema: eventStreamSchema("JobEvent") } } },
          ...notFoundError(),
          ...commonErrors("get"),
        },
      },
    },
    {
      route: ROUTES.image,
      method: "get",
      operation: {
        operationId: "getImage",
        summary: "A job's image",
        description:
          "The bytes with their own type, streamed from the store with `Content-Length`, `ETag` (the hash), `Cache-Control: public, max-age=31536000, immutable` and `Accept-Ranges: bytes`; 304 on `If-None-Match`, one `Range` a 206 (416 past the end), `If-Range` honoured. With GATEWAY_API_KEYS: the signed URL of the job's output, or a key that has a job with this image; any other request gets 401 (no valid key) or 404, whether the image exists or not.",
        tag: "generation",
        parameters: [
          { name: "name", in: "path", required: true, description: "The image's SHA-256, an extension (.jpg, .png) optional", schema: { type: "string" } },
          { name: "expires", in: "query", description: "With API keys: the signed URL's expiry (Unix seconds)", schema: { type: "integer" } },
          { name: "sig", in: "query", description: "With API keys: the signed URL's signature", schema: { type: "string" } },
          { name: "Range", in: "header", description: "One range of bytes: `bytes=a-b`, `bytes=a-` or `bytes=-n` (several parts: the whole image)", schema: { type: "string" } },
        ],
        responses: {
          200: { description: "The image", content: { "image/jpeg": { schema: { type: "string", format: "binary" } }, "image/png": { schema: { type: "string", format: "binary" } } } },
          206: {
            description: "The part of the image a `Range` asked for, its place in `Content-Range`",
            content: { "image/jpeg": { schema: { type: "string", format: "binary" } }, "image/png": { schema: { type: "string", format: "binary" } } },
          },
          304: { description: "Not modified (If-None-Match)" },
          416: { description: "The `Range` starts past the image's end; `Content-Range: bytes */<size>`" },
          ...notFoundError(),
          ...commonErrors("get"),
        },
      },
    },
    {
      route: ROUTES.openAiImages,
      method: "post",
      operation: {
        operationId: "createImages",
        summary: "OpenAI Images API: generate images",
        description:
          "For OpenAI's SDKs and the apps built on them, with `http(s)://<gateway>/v1` as their base URL. Each of the `n` images is one generation, admitted, limited and validated as `POST /api/generate`. Any model name is the gateway's one model. `output_format` converts the image only where the GPU server's format differs. `stream: true` answers OpenAI's image stream once the generation is admitted: keep-alive comments, then one `image_generation.completed` event (or an `error` event, which the SDKs throw). Errors take OpenAI's shape: bad input 400 (never reaching the GPU), a wrong key 401, a rate limit or a full queue 429 with `Retry-After`, GPU-server failures 502/503/504.",
        tag: "openai",
        requestBody: {
          required: true,
          content: {
            "application/json": {
              schema: ref("OpenAIImagesRequest"),
              examples: {
                url: { summary: "An image by URL (the default)", value: { model: "dall-e-3", prompt: "a red fox in snow", size: "1024x1024" }, "x-expected-status": 200 },
                b64: {
                  summary: "Two images as base64, a fixed seed",
                  value: { prompt: "a red fox in snow", n: 2, size: "512x512", response_format: "b64_json", seed: 42 },
                  "x-expected-status": 200,
                },
                libreChat: {
                  summary: "LibreChat's image tool: a WebP, as base64",
                  value: { model: "gpt-image-1", prompt: "a red fox in snow", n: 1, background: "auto", output_format: "webp", output_compression: 90, quality: "auto", size: "auto" },
                  "x-expected-status": 200,
                },
                stream: { summary: "A stream of one PNG", value: { model: "gpt-image-1", prompt: "a red fox in snow", size: "512x512", output_format: "png", stream: true, partial_images: 2 }, "x-expected-status": 200 },
              },
            },
          },
        },
        responses: {
          200: {
            description: "The images; with `stream: true`, OpenAI's image stream",
            content: {
              ...jsonResponse("", "OpenAIImagesResponse", {
                url: {
                  summary: "By URL",
                  value: {
                    created: 1767225600,
                    background: "auto",
                    data: [{ url: "https://gateway.example/api/images/9f2c1e0a4b7d3c6e8f5a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e.jpg" }],
                    output_format: "jpeg",
                    quality: "auto",
                    size: "1024x1024",
                  },
                },
                b64: {
                  summary: "As base64 (shortened)",
                  value: { created: 1767225600, background: "auto", data: [{ b64_json: "/9j/4AAQSkZJRgABAQ…" }, { b64_json: "/9j/4AAQSkZJRgABAQ…" }], output_format: "jpeg", quality: "auto", size: "512x512" },
                },
              }).content,
              "text/event-stream": {
                schema: eventStreamSchema("OpenAIImageStreamEvent"),
                examples: {
                  completed: {
                    summary: "Keep-alive comments (not shown), then the image (shortened)",
                    value: [
                      {
                        data: checked(OpenAIImageStreamEvent, "the stream's completed event", {
                          type: "image_generation.completed",
                          b64_json: "iVBORw0KGgoAAAANSUhEUgAA…",
                          created_at: 1767225600,
                          size: "512x512",
                          quality: "auto",
                          background: "auto",
                          output_format: "png",
                          usage: { input_tokens: 0, input_tokens_details: { image_tokens: 0, text_tokens: 0 }, output_tokens: 0, total_tokens: 0 },
                        }).value,
                      },
                    ],
                  },
                },
              },
            },
          },
          400: openAiErrorResponse(400, "Bad input: a field off the rules (`param` names it), a body that is no JSON object, `stream: true` with n > 1, more images than RATE_LIMIT_PER_MINUTE allows in a minute, a Host no image URL can be made of", {
            size: ["A size off the grid", fail.invalidParameter("size", "width: Input should be a multiple of 16")],
            outputFormat: ["An unknown output_format", fail.invalidParameter("output_format", 'must be "png", "jpeg" or "webp"')],
            compression: ["output_compression for a png", fail.invalidParameter("output_compression", 'applies to "jpeg" and "webp" only, not to "png"')],
            tooManyImages: ["n over the rate limit", fail.invalidParameter("n", "4 images are more than RATE_LIMIT_PER_MINUTE allows in a minute (3)")],
            stream: ["stream: true with n: 2", fail.invalidParameter("n", "a stream carries one image: ask n: 1, or leave stream out for n images in one answer")],
            notJson: ["Malformed JSON", fail.invalidJson(jsonParseError('{"prompt": "a red fox"'))],
            empty: ["Empty body", fail.invalidJson("the body is empty")],
            tooLarge: [`Over the default limit of ${defaults.maxBodyBytes} bytes (OpenAI has no 413)`, fail.payloadTooLarge(defaults.maxBodyBytes)],
            textPlain: ["Sent as text/plain (OpenAI has no 415)", fail.unsupportedMediaType("text/plain")],
          }),
          429: openAiErrorResponse(429, "The queue is full, no slot came free in time, or the `n` images do not fit the key's rate limit now (nothing is taken or sent)", {
            queueFull: ["Queue full", fail.queueFull()],
            rateLimited: ["Over the rate limit", fail.rateLimited(10, 12, { "RateLimit-Limit": "10", "RateLimit-Remaining": "1" }, { asked: 2, left: 1 })],
          }, { "Retry-After": RETRY_AFTER }),
          502: openAiErrorResponse(502, "The GPU server's connection was lost, or it answered something the gateway cannot read", { lost: ["Connection lost", fail.upstreamConnection(null)] }),
          503: openAiErrorResponse(503, "The GPU server is unreachable, or the gateway is shutting down", { shuttingDown: ["Shutting down", fail.shuttingDown()] }, { "Retry-After": RETRY_AFTER }),
          504: openAiErrorResponse(504, "No answer within REQUEST_TIMEOUT", { timeout: ["Timed out", fail.upstreamTimeout(defaults.requestTimeoutMs, null)] }),
          ...openAiCommonErrors(["POST"]),
        },
      },
    },
    imageInputEndpoint(ROUTES.openAiEdits, "createImageEdit", "edit an image"),
    imageInputEndpoint(ROUTES.openAiVariations, "createImageVariation", "vary an image"),
    {
      route: ROUTES.openAiModels,
      method: "get",
      operation: {
        operationId: "listModels",
        summary: "OpenAI API: the models",
        description:
          "The gateway's one image model, IMAGE_MODEL_NAME (some apps list models before they use one). A generation takes any model name and makes it with this one, so the names apps send as they are work: `dall-e-2` (Open WebUI's default when its model is unset), `dall-e-3`, `gpt-image-1` (LibreChat's), `gpt-image-2`; a gpt-image-* name answers base64 by default, as OpenAI does.",
        tag: "openai",
        responses: {
          200: jsonResponse("The models", "OpenAIModelList", {
            one: { summary: "The one model", value: { object: "list", data: [{ id: "Tongyi-MAI/Z-Image-Turbo", object: "model", created: 1767225600, owned_by: "text2image-gateway" }] } },
          }),
          ...openAiCommonErrors(["GET", "HEAD"]),
        },
      },
    },
    {
      route: ROUTES.openAiModel,
      method: "get",
      operation: {
        operationId: "retrieveModel",
        summary: "OpenAI API: one model",
        description: "The gateway's one image model by its name, IMAGE_MODEL_NAME, whose slash may come percent-encoded (%2F) or not; any other name is OpenAI's 404, `model_not_found`.",
        tag: "openai",
        parameters: [{ name: "model", in: "path", required: true, description: "IMAGE_MODEL_NAME", schema: { type: "string" } }],
        responses: {
          200: jsonResponse("The model", "OpenAIModel", {
            one: { summary: "The one model", value: { id: "Tongyi-MAI/Z-Image-Turbo", object: "model", created: 1767225600, owned_by: "text2image-gateway" } },
          }),
          404: openAiErrorResponse(404, "Not this gateway's model", { unknown: ["Another model", fail.noSuchModel("dall-e-3", "Tongyi-MAI/Z-Image-Turbo")] }),
          ...openAiCommonErrors(["GET", "HEAD"]),
        },
      },
    },
    {
      route: ROUTES.openApi,
      method: "get",
      operation: {
        operationId: "getOpenApiDocument",
        summary: "This document",
        description: "The OpenAPI 3.1 document of every endpoint, generated from the gateway's zod schemas. `/docs` renders it.",
        tag: "service",
        responses: {
          200: { description: "The OpenAPI document", content: { "application/json": { schema: { type: "object" } } } },
          ...commonErrors("get"),
        },
      },
    },
  ];
}

/** The operationId of an endpoint's copy at its original gateway path. */
export function aliasOperationId(operationId: string): string {
  return `${operationId}AtOriginalPath`;
}

/** The gateway's OpenAPI 3.1 document: every endpoint under /api and at its original path. */
export function buildOpenApiDocument(): OpenApiDocument {
  const paths: Record<string, PathItem> = {};
  const aliases: Record<string, PathItem> = {};
  for (const { route, method, operation } of endpoints()) {
    const { alias, access } = route;
    // Next's [segment] and [...segments] are OpenAPI's {segment}.
    const path = route.path.replace(/\[(?:\.\.\.)?(\w+)\]/g, "{$1}");
    const { tag, ...rest } = { ...operation, ...(access ? { security: OPTIONAL_API_KEY } : {}) };
    paths[path] = { ...paths[path], [method]: { ...rest, tags: [tag] } };
    if (alias) {
      const copy: Operation = {
        ...rest,
        operationId: aliasOperationId(rest.operationId),
        description: `Same handler and answers as \`${method.toUpperCase()} ${path}\`. ${rest.description}`,
        tags: ["original paths"],
      };
      aliases[alias] = { ...aliases[alias], [method]: copy };
    }
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Text-to-Image Gateway",
      version: packageJson.version,
      description: [
        "An API gateway in front of self-hosted text-to-image GPU servers (`text2image_server.py`).",
        "It validates every request before it reaches the GPU, limits how many generations run there at once (with a bounded FIFO queue), enforces timeouts and turns every failure into JSON `{\"detail\": ...}` — a string, or FastAPI's list for a 422.",
        "Examples show the default limits; the deployed gateway's own are set by its environment.",
      ].join("\n\n"),
    },
    tags: TAGS,
    paths: { ...paths, ...aliases },
    components: {
      schemas: componentSchemas(),
      headers: {
        RetryAfter: {
          description: "Seconds to wait before retrying: sent by the gateway with its own 503s, or passed on from the GPU server",
          schema: { type: "string" },
          example: fail.queueFull().headers["Retry-After"],
        },
        Allow: {
          description: "The methods this path serves",
          schema: { type: "string" },
          example: "POST",
        },
        WWWAuthenticate: {
          description: "How to send an API key",
          schema: { type: "string" },
          example: fail.apiKeyMissing().headers["WWW-Authenticate"],
        },
        RateLimitLimit: { description: "Images allowed per minute (RATE_LIMIT_PER_MINUTE)", schema: { type: "string" }, example: "60" },
        RateLimitRemaining: { description: "Images left now", schema: { type: "string" }, example: "0" },
        RateLimitReset: { description: "Seconds until the window has room again", schema: { type: "string" }, example: "7" },
      },
      securitySchemes: {
        bearerKey: { type: "http", scheme: "bearer", description: "`Authorization: Bearer <key>`, a key of GATEWAY_API_KEYS" },
        apiKeyHeader: { type: "apiKey", in: "header", name: "X-API-Key", description: "`X-API-Key: <key>`, a key of GATEWAY_API_KEYS" },
      },
    },
  };
}
