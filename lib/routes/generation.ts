/** The generate doors, original and streamed, with their OpenAPI operations. */
import { fail } from "../errors";
import type { GatewayError } from "../errors";
import { GenerateRequest, GenerateResponse, StreamEvent, validateGenerateRequest } from "../schemas";
import { BINARY, DEFAULT_SERVER, HEADERS, commonErrors, defaults, errorResponse, eventStream, json, jsonParseError } from "./entry";
import type { ErrorExamples, Operation, Response, RouteEntry } from "./entry";

/** A 1x1 JPEG, the genuine server's default format (emulator/jpeg.ts made it). */
const TINY_JPEG =
  "data:image/jpeg;base64,/9j/4AAQSkZJRgABAQAAAQABAAD/2wCEAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRQBAwQEBQQFCQUFCRQNCw0UFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFP/AABEIAAEAAQMBEQACEQEDEQH/xAGiAAABBQEBAQEBAQAAAAAAAAAAAQIDBAUGBwgJCgsQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+gEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoLEQACAQIEBAMEBwUEBAABAncAAQIDEQQFITEGEkFRB2FxEyIygQgUQpGhscEJIzNS8BVictEKFiQ04SXxFxgZGiYnKCkqNTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqCg4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2dri4+Tl5ufo6ery8/T19vf4+fr/2gAMAwEAAhEDEQA/AOTr8UP6pP/Z";
const SAMPLE = { image_base64: TINY_JPEG, seed: 1234567, generation_time_ms: 3480, width: 1024, height: 1024, image_id: "b0c1d2e3" };

/** Example generate bodies with the status they get; an invalid one's key recurs in that error's examples, with the computed `detail`. */
const GENERATE_CASES: Record<string, { summary: string; value: unknown; status: 200 | 400 | 422 }> = {
  promptOnly: { summary: "Only a prompt: the defaults fill in the rest", value: { prompt: "a red fox in snow" }, status: 200 },
  everyField: {
    summary: "Every field",
    value: { prompt: "a lighthouse at dusk, oil painting", negative_prompt: "blurry, text, watermark", height: 512, width: 768, seed: 42, num_inference_steps: 8, guidance_scale: 0.0 },
    status: 200,
  },
  unknownFieldDropped: {
    summary: "A small image; the unknown field `style` is dropped",
    value: { prompt: "a paper boat on a pond", width: 256, height: 256, style: "watercolor" },
    status: 200,
  },
  widthTooLarge: { summary: "Invalid (422): width above the maximum", value: { prompt: "a red fox in snow", width: 4096 }, status: 422 },
  promptMissing: { summary: "Invalid (422): no prompt", value: { negative_prompt: "blurry" }, status: 422 },
  stepsNotInteger: { summary: "Invalid (422): steps not a whole number, prompt empty", value: { prompt: "", num_inference_steps: 7.5 }, status: 422 },
  notAnObject: { summary: "Invalid (400): a JSON array, not an object", value: ["a red fox in snow"], status: 400 },
};

/** What the gateway answers a generate body with, by the functions it uses to decide. */
function expectedError(value: unknown): GatewayError | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return fail.invalidBody();
  const result = validateGenerateRequest(value);
  return result.ok ? undefined : fail.validation(result.detail);
}

/** The generate body and its examples; a valid one is answered `accepted` (a job: 202). */
export function generateRequestBody(accepted = 200): NonNullable<Operation["requestBody"]> {
  const examples = Object.fromEntries(
    Object.entries(GENERATE_CASES).map(([key, { summary, value, status }]) => {
      const actual = expectedError(value)?.status ?? 200;
      if (actual !== status) throw new Error(`OpenAPI example ${key} is documented as ${status} but would get ${actual}`);
      return [key, { summary, value, "x-expected-status": status === 200 ? accepted : status }];
    }),
  );
  return { required: true, content: { "application/json": { schema: GenerateRequest, examples } } };
}

/** The answers to the invalid request examples, under the same keys. */
function requestErrorExamples(status: number): ErrorExamples {
  const examples: ErrorExamples = {};
  for (const [key, { summary, value }] of Object.entries(GENERATE_CASES)) {
    const error = expectedError(value);
    if (error?.status === status) examples[key] = [summary, error];
  }
  return examples;
}

/** Every failure of a generation request before an answer starts. */
export function generateErrors(allow?: string[], moreUnavailable: ErrorExamples = {}): Record<number | "default", Response> {
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
      HEADERS.wwwAuthenticate,
    ),
    403: errorResponse(403, "A browser request from a web origin that CORS_ORIGINS does not list.", { foreignOrigin: ["From another site", fail.originNotAllowed()] }),
    ...commonErrors("post", allow),
    413: errorResponse(413, "The body is over MAX_BODY_BYTES (counted while reading).", {
      tooLarge: [`Over the default limit of ${defaults.maxBodyBytes} bytes`, fail.payloadTooLarge(defaults.maxBodyBytes)],
    }),
    415: errorResponse(415, "`Content-Type` is not JSON (none at all is taken as JSON).", { textPlain: ["Sent as text/plain", fail.unsupportedMediaType("text/plain")] }),
    422: errorResponse(422, "A field breaks a rule: FastAPI's list of `{loc, msg, type}`, one entry per field.", requestErrorExamples(422)),
    429: errorResponse(
      429,
      "RATE_LIMIT_PER_MINUTE (images a minute) is set and this key (or client IP) used it up; `Retry-After` says when one more fits. Every admitted answer carries the RateLimit-* fields too.",
      { rateLimited: ["Over 60 per minute", fail.rateLimited(60, 7, { "RateLimit-Limit": "60", "RateLimit-Remaining": "0", "RateLimit-Reset": "7" })] },
      HEADERS.rateLimited,
    ),
    500: errorResponse(500, "The GPU server failed (its status is passed on), or an unexpected fault in the gateway.", {
      upstream: ["The GPU server answered 500", fail.upstreamStatus(500, "CUDA out of memory")],
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
      HEADERS.retryAfter,
    ),
    504: errorResponse(504, "The GPU server did not answer within REQUEST_TIMEOUT, or answered 504 itself.", {
      timeout: ["No answer within REQUEST_TIMEOUT", fail.upstreamTimeout(defaults.requestTimeoutMs, null)],
      connectTimeout: ["No connection in time", fail.upstreamConnectTimeout(DEFAULT_SERVER, null)],
      upstreamTimeout: ["The GPU server's own 504", fail.upstreamStatus(504, "Generation timed out")],
    }),
    default: errorResponse(429, "Any other error status of the GPU server, passed on with its detail.", { upstreamStatus: ["The GPU server answered 429", fail.upstreamStatus(429, "Too many requests")] }),
  };
}

/** The generate answer asked for with Accept: image/png, image/jpeg or image/*: the image's own bytes and type. */
function withImageBytes(response: Response): Response {
  return {
    ...response,
    description: `${response.description}; with \`Accept: image/png\`, \`image/jpeg\` or \`image/*\` preferred to JSON, the image's own bytes and type (the GPU server's: JPEG by default), its fields in \`X-Seed\`, \`X-Generation-Time-Ms\`, \`X-Image-Id\` and \`X-Image-Sha256\``,
    content: { ...response.content, "image/jpeg": BINARY, "image/png": BINARY },
  };
}

const progress = (step: number) => ({ type: "progress", step, total_steps: 9, progress: Math.trunc((step / 9) * 100) });

export const GENERATION_ROUTES = {
  generate: {
    path: "/api/generate",
    alias: "/generate",
    access: "generation",
    operations: () => ({
      post: {
        operationId: "generate",
        summary: "Generate an image",
        description: "Validates the body (nothing invalid reaches the GPU server), waits for a slot, sends all seven fields upstream and streams the GPU server's answer back unchanged.",
        tags: ["generation"],
        requestBody: generateRequestBody(),
        responses: {
          200: withImageBytes(json("The GPU server's answer, byte for byte", GenerateResponse, { image: ["A generated image (a real one is 1–8 MB of base64)", { ...SAMPLE, queue_wait_ms: 12 }] })),
          ...generateErrors(),
        },
      },
    }),
  },
  generateStream: {
    path: "/api/generate-stream",
    alias: "/generate-stream",
    access: "generation",
    operations: () => ({
      post: {
        operationId: "generateStream",
        summary: "Generate an image, with progress as server-sent events",
        description:
          "Validated and admitted as `POST /api/generate`. Errors before the stream starts are JSON errors with their status; after, the stream ends with an `error` event. Each event is one line `data: <json>` and a blank line: `queued` while waiting for a slot, `progress` per inference step, then `complete` (with the image) or `error`. Lines starting with `:` are keep-alive comments.",
        tags: ["generation"],
        requestBody: generateRequestBody(),
        responses: {
          200: {
            description: "A text/event-stream of `data:` lines, each one JSON event: `queued`, `progress`, then `complete` or `error`.",
            content: {
              "text/event-stream": eventStream(StreamEvent, {
                completed: [
                  "Queued, then step by step to the image (the genuine server's events, relayed unchanged)",
                  [{ type: "queued", queue_position: 1, request_id: "4b96fb7d-9eed-4ecd-9393-bec96723ea20" }, progress(1), progress(2), progress(9), progress(9), { type: "complete", ...SAMPLE }],
                ],
                waited: [
                  "Waited for a gateway slot first (the gateway's own queued events), then the GPU server's",
                  [
                    { type: "queued", queue_position: 2, position: 2 },
                    { type: "queued", queue_position: 1, position: 1 },
                    { type: "queued", queue_position: 1, request_id: "0c6f8e63-51d9-4f4e-9a8e-2c5d3f1b7a90" },
                    progress(1),
                  ],
                ],
                failed: ["Failed after it started", [progress(1), { type: "error", kind: fail.upstreamConnection(null).code, message: fail.upstreamConnection(null).message }]],
              }),
            },
          },
          ...generateErrors(),
        },
      },
    }),
  },
} as const satisfies Record<string, RouteEntry>;
