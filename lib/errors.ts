/** The one error table: every failure with its status and public `detail`; internals ride along as `cause`, for logs only. */
import type { ValidationDetail } from "./schemas";

/** What a code means beyond its detail, read by every part that tells or weighs a failure. */
export interface ErrorTraits {
  /** Its status, unless the factory gives one (upstream_status: the GPU server's own). */
  readonly status: number;
  /** Logged at error, not warn: a fault of the gateway or its configuration, which no client can fix. */
  readonly alarm?: boolean;
  /** A failure of the GPU server, counted by kind in gateway_upstream_errors_total. */
  readonly upstream?: boolean;
  /** A busy gateway's refusal, counted in gateway_rejections_total. */
  readonly rejection?: boolean;
  /** OpenAI's 429 (its SDKs raise RateLimitError, and may wait and retry). */
  readonly rateLimited?: boolean;
  /** Counts toward the server's ejection (an upstream_status does when it is a 5xx). */
  readonly ejects?: boolean;
  /** The server answered: the call is over there. */
  readonly answered?: boolean;
  /** Says nothing of the server: the client left, or the gateway itself failed. */
  readonly neutral?: boolean;
  /** A refusal before any generation started, which a job tries again later (an upstream_status does when it is a 503). */
  readonly retried?: boolean;
}

const TABLE = {
  invalid_json: { status: 400 },
  invalid_body: { status: 400 },
  validation_failed: { status: 422 },
  payload_too_large: { status: 413 },
  body_timeout: { status: 408 },
  unsupported_media_type: { status: 415 },
  method_not_allowed: { status: 405 },
  invalid_header: { status: 400 },
  idempotency_mismatch: { status: 422 },
  invalid_parameter: { status: 400 },
  not_found: { status: 404 },
  model_not_found: { status: 404 },
  image_input_unsupported: { status: 400 },
  jobs_off: { status: 501 },
  storage_full: { status: 503 },
  store_unavailable: { status: 503, retried: true },
  store_full: { status: 503 },
  queue_full: { status: 503, rejection: true, rateLimited: true, retried: true },
  queue_timeout: { status: 503, rejection: true, rateLimited: true },
  limiter_unavailable: { status: 503, retried: true },
  shutting_down: { status: 503 },
  unauthorized: { status: 401 },
  rate_limited: { status: 429, rejection: true, rateLimited: true },
  origin_not_allowed: { status: 403 },
  upstream_unavailable: { status: 503, upstream: true, ejects: true, retried: true },
  upstream_timeout: { status: 504, upstream: true, ejects: true },
  upstream_transport: { status: 502, upstream: true, ejects: true },
  upstream_bad_response: { status: 502, upstream: true, answered: true },
  upstream_status: { status: 502, upstream: true, answered: true },
  upstream_credentials: { status: 502, upstream: true, ejects: true, answered: true, alarm: true },
  // 499: the client went away; nobody reads the answer, but logs do.
  client_closed: { status: 499, neutral: true },
  internal: { status: 500, neutral: true, alarm: true },
} satisfies Record<string, ErrorTraits>;

export type ErrorCode = keyof typeof TABLE;

/** The one table of failures: each code's status and traits. */
export const ERRORS: Readonly<Record<ErrorCode, ErrorTraits>> = TABLE;

/** The traits of any thrown value: an unknown one is an internal failure. */
export function traitsOf(error: unknown): ErrorTraits {
  return ERRORS[error instanceof GatewayError ? error.code : "internal"];
}

const BRAND = Symbol.for("text2image-gateway.error");

export class GatewayError extends Error {
  override name = "GatewayError";
  readonly [BRAND] = true;

  /** Next may bundle this module more than once (instrumentation, each route): the brand, not the class, makes one. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === "object" && value !== null && BRAND in value;
  }

  /** Its status is the table's, unless `options.status` says otherwise. */
  constructor(
    readonly code: ErrorCode,
    readonly detail: string | ValidationDetail[],
    options: { status?: number; cause?: unknown; headers?: Record<string, string>; param?: string; upstreamStatus?: number } = {},
  ) {
    super(typeof detail === "string" ? detail : "Request validation failed", { cause: options.cause });
    this.status = options.status ?? ERRORS[code].status;
    this.headers = { ...options.headers };
    this.param = options.param;
    this.upstreamStatus = options.upstreamStatus;
  }

  readonly status: number;
  readonly headers: Record<string, string>;
  /** The request field at fault, for OpenAI's error shape. */
  readonly param: string | undefined;
  /** The status the GPU server answered, where it differs from the gateway's. */
  readonly upstreamStatus: number | undefined;
}

/** Any thrown value as the gateway's failure: an unknown one is internal. */
export function asGatewayError(error: unknown): GatewayError {
  return error instanceof GatewayError ? error : fail.internal(error);
}

/** The refusals a client may simply retry: after this many seconds. */
const RETRY_LATER = { "Retry-After": "5" };

/** RFC 6750's challenge; the realm names the gateway, never a key or a host. */
const AUTH_CHALLENGE = 'Bearer realm="text2image-gateway"';

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

export const fail = {
  invalidJson: (reason: string) => new GatewayError("invalid_json", `Request body is not valid JSON: ${reason}`),
  invalidBody: () => new GatewayError("invalid_body", "Request body must be a JSON object"),
  validation: (detail: ValidationDetail[]) => new GatewayError("validation_failed", detail),
  payloadTooLarge: (limit: number) => new GatewayError("payload_too_large", `Request body is larger than ${limit} bytes (MAX_BODY_BYTES)`),
  bodyTimeout: (limitMs: number) =>
    new GatewayError("body_timeout", `The request body did not arrive within ${seconds(limitMs)} (REQUEST_BODY_TIMEOUT)`, { headers: { Connection: "close" } }),
  unsupportedMediaType: (got: string | null) => new GatewayError("unsupported_media_type", `Content-Type must be application/json${got ? `, not ${got}` : ""}`),
  methodNotAllowed: (method: string, allow: string[]) =>
    new GatewayError("method_not_allowed", `Method ${method} not allowed; use ${allow.join(" or ")}`, { headers: { Allow: allow.join(", ") } }),
  notFound: (path: string) => new GatewayError("not_found", `No endpoint at ${path}`),
  /** Unknown, expired and another caller's alike: which one is not said. */
  noSuchJob: (id: string) => new GatewayError("not_found", `No job ${id.slice(0, 64)} here: unknown, expired, or another caller's`),
  /** OpenAI's answer to a model it does not have (its code, `model_not_found`). */
  noSuchModel: (id: string, known: string) =>
    new GatewayError("model_not_found", `The model ${id.slice(0, 200)} does not exist here: this gateway's one model is ${known} (IMAGE_MODEL_NAME)`, { param: "model" }),
  noSuchImage: (name: string) => new GatewayError("not_found", `No image ${name.slice(0, 80)} here: unknown, or expired with its job`),
  jobsOff: () =>
    new GatewayError(
      "jobs_off",
      "Jobs are off on this gateway (JOBS=false, the default on Vercel, which keeps no disk): use /api/generate or /api/generate-stream",
    ),
  /** DATA_DIR's disk is full, or an image is larger than DATA_MAX_BYTES: jobs wait for room. */
  storageFull: (why: string, cause?: unknown) =>
    new GatewayError("storage_full", `The gateway has no room to keep images: ${why}; try again later`, { cause, headers: RETRY_LATER }),
  /** JOB_STORE=redis and Redis unreachable: no job can be read or made, and nothing is written half. */
  jobStoreUnavailable: (cause?: unknown) =>
    new GatewayError("store_unavailable", "The job store (Redis) is unreachable: try again later", { cause, headers: RETRY_LATER }),
  /** MAX_JOBS kept and none of them finished: no room for another. */
  jobStoreFull: (max: number) =>
    new GatewayError("store_full", `The gateway keeps at most ${max} jobs (MAX_JOBS), and none of them has finished: try again later`, {
      headers: RETRY_LATER,
    }),
  invalidHeader: (name: string, why: string) => new GatewayError("invalid_header", `${name} ${why}`),
  /** /v1/images/edits and /variations: the GPU server makes images from text alone. */
  imageInputUnsupported: (path: string) =>
    new GatewayError(
      "image_input_unsupported",
      `${path} needs an input image, and the GPU server behind this gateway takes none: it makes images from a text prompt only (use /v1/images/generations)`,
      { param: "image" },
    ),
  /** A field of an OpenAI-style request the gateway cannot honour as given. */
  invalidParameter: (param: string, why: string) => new GatewayError("invalid_parameter", `${param}: ${why}`, { param }),
  /** The IETF draft's answer to a reused Idempotency-Key with another body. */
  idempotencyMismatch: () =>
    new GatewayError("idempotency_mismatch", "This Idempotency-Key was used with another request body: use a new key for a new request"),
  queueFull: () => new GatewayError("queue_full", "Gateway queue is full", { headers: RETRY_LATER }),
  queueTimeout: (limitMs: number) =>
    new GatewayError("queue_timeout", `No generation slot became free within ${seconds(limitMs)} (QUEUE_TIMEOUT)`, { headers: RETRY_LATER }),
  /** Draining for a shutdown (SIGTERM): `Connection: close` sends the client's retry to a fresh connection, elsewhere. */
  shuttingDown: (cause?: unknown) =>
    new GatewayError("shutting_down", "Gateway is shutting down", { cause, headers: { ...RETRY_LATER, Connection: "close" } }),
  apiKeyMissing: () =>
    new GatewayError("unauthorized", "An API key is required: send it as Authorization: Bearer <key> or X-API-Key: <key>", {
      headers: { "WWW-Authenticate": AUTH_CHALLENGE },
    }),
  apiKeyInvalid: () =>
    new GatewayError("unauthorized", "The API key is not valid", { headers: { "WWW-Authenticate": `${AUTH_CHALLENGE}, error="invalid_token"` } }),
  /** `headers` are the RateLimit-* fields of the refused request; Retry-After says when the images asked for fit. */
  rateLimited: (limit: number, retryAfterSeconds: number, headers: Record<string, string>, images?: { asked: number; left: number }) =>
    new GatewayError(
      "rate_limited",
      `Rate limit of ${limit} images per minute reached${images ? `: ${images.asked} asked, ${images.left} left` : ""}; retry in ${retryAfterSeconds} s (RATE_LIMIT_PER_MINUTE)`,
      { headers: { ...headers, "Retry-After": String(retryAfterSeconds) } },
    ),
  /** A browser POST from a site that CORS_ORIGINS does not list (a form or a no-preflight fetch). */
  originNotAllowed: () => new GatewayError("origin_not_allowed", "Requests from this web origin are not allowed (CORS_ORIGINS)"),
  /** REDIS_FAILURE_MODE=closed and Redis unreachable: no global limit, so no new work. */
  limiterUnavailable: (cause?: unknown) => new GatewayError("limiter_unavailable", "Concurrency limiter unavailable", { cause, headers: RETRY_LATER }),
  upstreamRefused: (server: string, cause: unknown) =>
    new GatewayError("upstream_unavailable", `Text-to-image server ${server} is unreachable: connection refused`, { cause }),
  upstreamUnresolvable: (server: string, cause: unknown) =>
    new GatewayError("upstream_unavailable", `Text-to-image server ${server} is unreachable: host name not found`, { cause }),
  /** Several servers, and every one is ejected or refused the connection: nothing to try, so at once. */
  noServerAvailable: (cause?: unknown) => new GatewayError("upstream_unavailable", "No text-to-image server is available", { cause }),
  upstreamTimeout: (limitMs: number, cause: unknown) =>
    new GatewayError("upstream_timeout", `Text-to-image server did not answer within ${seconds(limitMs)} (REQUEST_TIMEOUT)`, { cause }),
  upstreamConnectTimeout: (server: string, cause: unknown) =>
    new GatewayError("upstream_timeout", `Text-to-image server ${server} did not accept a connection in time`, { cause }),
  upstreamConnection: (cause: unknown) => new GatewayError("upstream_transport", "Connection to the text-to-image server was lost", { cause }),
  upstreamBadResponse: (reason: string, cause?: unknown) =>
    new GatewayError("upstream_bad_response", `Text-to-image server sent an invalid response: ${reason}`, { cause }),
  upstreamTooLarge: (limit: number, cause: unknown) =>
    new GatewayError("upstream_bad_response", `Text-to-image server response is larger than ${limit} bytes (MAX_RESPONSE_BYTES)`, { cause }),
  /**
   * The original gateway's mapping of an upstream error status: 503 and 504
   * keep their detail. A 404 or 405 is no fault of the client's: the gateway
   * asks a path or method the server does not serve, so it is not the GPU
   * server it expects (a wrong TEXT2IMAGE_SERVER_URL): a 502, as a server fault.
   */
  upstreamStatus: (status: number, detail: string, retryAfter?: string) => {
    if (status < 400) return fail.upstreamBadResponse(`unexpected status ${status}`);
    if (status === 404 || status === 405) {
      const why = `Text-to-image server answered HTTP ${status} (${detail}): TEXT2IMAGE_SERVER_URL may not point at a text2image_server`;
      return new GatewayError("upstream_status", why, { upstreamStatus: status });
    }
    const headers: Record<string, string> = retryAfter ? { "Retry-After": retryAfter } : {};
    const text = status === 503 || status === 504 ? detail : `Text-to-image server error: ${detail}`;
    return new GatewayError("upstream_status", text, { status, headers });
  },
  /** The GPU server answered 401 or 403: the gateway's credentials, which no client can fix, so a 502 (logged as a configuration error). */
  upstreamCredentials: (status: number) =>
    new GatewayError(
      "upstream_credentials",
      `Text-to-image server refused the gateway's credentials (HTTP ${status}): check TEXT2IMAGE_SERVER_TOKEN and the credentials in TEXT2IMAGE_SERVER_URL`,
    ),
  /** The GPU server refused a request the gateway had validated: its 422 list goes on as it is. */
  upstreamValidation: (detail: ValidationDetail[]) => new GatewayError("upstream_status", detail, { status: 422 }),
  /** GET /metrics is a passthrough: any failure of it is the upstream's, so 502. */
  metricsUnavailable: (cause: GatewayError) =>
    new GatewayError(cause.code, `Could not fetch the text-to-image server's metrics: ${cause.message}`, { status: 502, cause }),
  clientClosed: (cause?: unknown) => new GatewayError("client_closed", "Client closed the request", { cause }),
  /** A wait or call stopped by its signal: the gateway's own reason (the drain's 503), else the client left. Every abort is classified here. */
  aborted: (reason: unknown) => (reason instanceof GatewayError ? reason : fail.clientClosed(reason)),
  internal: (cause: unknown) => new GatewayError("internal", "Internal gateway error", { cause }),
} as const;

/** A failure's OpenAI status and body; the `type` follows the status, as OpenAI's SDKs pick their error class by it. */
export function openAiError(known: GatewayError): { status: number; body: { error: { message: string; type: string; param: string | null; code: string } } } {
  const status = ERRORS[known.code].rateLimited ? 429 : [408, 413, 415, 422].includes(known.status) ? 400 : known.status;
  const type = status === 429 ? "rate_limit_error" : status >= 500 ? "server_error" : "invalid_request_error";
  const [message, param] =
    typeof known.detail === "string"
      ? [known.detail, known.param]
      : [known.detail.map((item) => `${String(item.loc.at(-1))}: ${item.msg}`).join("; "), known.detail[0] && String(known.detail[0].loc.at(-1))];
  const code = known.code === "unauthorized" ? "invalid_api_key" : known.code;
  return { status, body: { error: { message, type, param: param ?? null, code } } };
}
