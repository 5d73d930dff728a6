import { z } from "zod";
import { MAX_IMAGES_DEFAULT } from "./api-shapes";
import { SIZE_MULTIPLE_DEFAULT } from "./schemas";

/** Seconds, fractions allowed (tests use sub-second limits). */
const seconds = z.coerce.number({ error: "must be a number of seconds" }).positive({ error: "must be a number of seconds greater than 0" });

const WHOLE = { error: "must be a whole number" };
const count = (min: number) => z.coerce.number(WHOLE).int(WHOLE).min(min, { error: `must be a whole number of at least ${min}` });

const URL_FORM = "must be an http:// or https:// URL";

const httpUrl = z.url({ protocol: /^https?$/, error: URL_FORM });

/** A comma-separated list, its entries trimmed, empty ones dropped. */
const commaList = z.string().transform((value) => value.split(",").map((part) => part.trim()).filter((part) => part !== ""));

/** One URL, or several separated by commas: the GPU servers to balance over. */
const serverUrls = commaList.transform((parts, ctx) => {
  if (parts.length === 0) {
    ctx.addIssue({ code: "custom", message: URL_FORM });
    return z.NEVER;
  }
  const urls: URL[] = [];
  for (const part of parts) {
    const parsed = httpUrl.safeParse(part);
    if (!parsed.success) {
      const message = parts.length > 1 ? `each comma-separated entry ${URL_FORM}; ${JSON.stringify(withoutCredentials(part))} is not` : URL_FORM;
      ctx.addIssue({ code: "custom", message });
      return z.NEVER;
    }
    const url = new URL(parsed.data);
    const where = (each: URL) => each.origin + each.pathname.replace(/\/+$/, "");
    if (urls.some((each) => where(each) === where(url))) {
      ctx.addIssue({ code: "custom", message: `lists ${JSON.stringify(withoutCredentials(part))} twice` });
      return z.NEVER;
    }
    urls.push(url);
  }
  return urls;
});

/** A word, matched without regard to case (LOG_LEVEL=DEBUG works). */
const word = z.string().trim().toLowerCase();
const oneOf = <const T extends readonly [string, ...string[]]>(values: T, error = `must be ${values.join(" or ")}`) => word.pipe(z.enum(values, { error }));

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

const flag = oneOf(["true", "false"]).transform((value) => value === "true");

/** Header-safe secrets: visible ASCII, no spaces. */
const VISIBLE_ASCII = /^[\x21-\x7e]+$/;
const API_KEY_MIN_LENGTH = 16;

const apiKey = z
  .string()
  .regex(VISIBLE_ASCII, { error: "keys must be visible ASCII characters without spaces" })
  .min(API_KEY_MIN_LENGTH, { error: `each key must be at least ${API_KEY_MIN_LENGTH} characters long` });

/** Proxies in front that add to X-Forwarded-For: false (the socket counts), true (the left-most counts), or hops from the right. */
const trustProxy = word.pipe(
  z.union([z.enum(["true", "false"]).transform((value) => (value === "true" ? Infinity : 0)), z.string().regex(/^\d+$/).transform(Number)], {
    error: "must be true, false or a number of proxy hops",
  }),
);

const corsOrigin = z.string().transform((origin, context) => {
  const normalized = origin === "*" ? origin : originOf(origin);
  if (normalized !== undefined) return normalized;
  context.addIssue({ code: "custom", message: "must be a comma-separated list of origins (scheme://host[:port], nothing after), or *" });
  return z.NEVER;
});

/** An http(s) origin as browsers send it in `Origin` (lower-case host, no default port), or undefined if `value` is more than an origin. */
function originOf(value: string): string | undefined {
  const url = URL.parse(value);
  if (!url) return undefined;
  const bare = url.pathname === "/" && !url.search && !url.hash && !url.username && !url.password && !value.endsWith("?") && !value.endsWith("#");
  return bare && (url.protocol === "http:" || url.protocol === "https:") ? url.origin : undefined;
}

const schema = z
  .object({
    TEXT2IMAGE_SERVER_URL: serverUrls.default([new URL("http://localhost:8001")]),
    REQUEST_TIMEOUT: seconds.default(300),
    MAX_CONCURRENT_REQUESTS: count(1).default(10),
    MAX_QUEUE: count(0).default(100),
    QUEUE_TIMEOUT: seconds.optional(),
    MAX_BODY_BYTES: count(1).default(64 * 1024),
    REQUEST_BODY_TIMEOUT: seconds.default(30),
    SEND_TIMEOUT: seconds.default(30),
    SIZE_MULTIPLE: count(1).default(SIZE_MULTIPLE_DEFAULT),
    MAX_RESPONSE_BYTES: count(1).default(64 * 1024 * 1024),
    SSE_KEEPALIVE_INTERVAL: seconds.default(15),
    SHUTDOWN_GRACE: seconds.default(30),
    LOG_LEVEL: oneOf(LOG_LEVELS, `must be one of ${LOG_LEVELS.join(", ")}`).default("info"),
    LOG_PROMPTS: flag.default(false),
    TEXT2IMAGE_SERVER_TOKEN: z.string().trim().regex(VISIBLE_ASCII, { error: "must be visible ASCII characters without spaces" }).optional(),
    GATEWAY_API_KEYS: commaList.pipe(z.array(apiKey).min(1, { error: "must be a comma-separated list of keys" })).default([]),
    RATE_LIMIT_PER_MINUTE: count(0).default(0),
    TRUST_PROXY: trustProxy.default(0),
    CORS_ORIGINS: commaList.pipe(z.array(corsOrigin)).default([]),
    /** Where the shared limiter keeps its state; credentials in it are never shown. */
    REDIS_URL: z.url({ protocol: /^rediss?$/, error: "must be a redis:// or rediss:// URL" }).optional(),
    LEASE_TTL: seconds.default(15),
    REDIS_FAILURE_MODE: oneOf(["local", "closed"]).default("local"),
    MAX_CONCURRENT_PER_SERVER: count(1).optional(),
    HEALTH_INTERVAL: seconds.default(5),
    HEALTH_REUSE: seconds.default(1),
    EJECT_AFTER_FAILURES: count(1).default(3),
    EJECT_BASE_SECONDS: seconds.default(10),
    EJECT_MAX_SECONDS: seconds.default(300),
    JOBS: flag.optional(),
    IMAGE_MODEL_NAME: z.string().trim().default("Tongyi-MAI/Z-Image-Turbo"),
    MAX_IMAGES_PER_REQUEST: count(1).default(MAX_IMAGES_DEFAULT),
    PUBLIC_BASE_URL: httpUrl.optional(),
    DATA_DIR: z.string().trim().default("./data"),
    JOB_TTL: seconds.default(24 * 60 * 60),
    DATA_MAX_BYTES: count(1).default(5 * 1024 ** 3),
    MAX_JOBS: count(1).default(100_000),
    IMAGE_STORE: oneOf(["file", "s3"], "must be file or s3 (vercel-blob is not offered: on Vercel, use an S3-compatible store such as R2 or S3)")
      .default("file"),
    S3_BUCKET: z.string().trim().optional(),
    S3_PREFIX: z.string().trim().default(""),
    S3_ENDPOINT: httpUrl.optional(),
    S3_FORCE_PATH_STYLE: flag.default(false),
    JOB_STORE: oneOf(["sqlite", "redis"]).optional(),
    SHARED_DATA_DIR: flag.default(false),
    // Set by Vercel on its functions.
    VERCEL: z.string().optional(),
  })
  .superRefine((env, context) => {
    if (env.IMAGE_STORE === "s3" && env.S3_BUCKET === undefined) context.addIssue({ code: "custom", path: ["S3_BUCKET"], message: "is required with IMAGE_STORE=s3" });
    if (env.JOB_STORE === "redis" && env.REDIS_URL === undefined) context.addIssue({ code: "custom", path: ["JOB_STORE"], message: "redis needs REDIS_URL" });
    if (env.JOB_STORE === "redis" && env.IMAGE_STORE === "file" && !env.SHARED_DATA_DIR) {
      context.addIssue({
        code: "custom",
        path: ["JOB_STORE"],
        message:
          "redis with IMAGE_STORE=file would keep each image on one gateway's disk, where the others cannot serve it: set IMAGE_STORE=s3, or SHARED_DATA_DIR=true if DATA_DIR is storage every gateway shares (NFS, say)",
      });
    }
  })
  .transform((env) => {
    const deadlines = fitDeadlines(env.QUEUE_TIMEOUT ?? env.REQUEST_TIMEOUT, env.REQUEST_TIMEOUT, env.VERCEL !== undefined);
    const jobStore = env.JOB_STORE ?? (env.REDIS_URL !== undefined && env.IMAGE_STORE !== "file" ? "redis" : "sqlite");
    const jobs = env.JOBS ?? (env.VERCEL === undefined || jobStore === "redis");
    // REDIS_URL alone (the global limit's, as deployed before jobs could be shared) leaves jobs per instance: said at start and in /api/health.
    const jobsNote = jobs && env.REDIS_URL !== undefined && jobStore === "sqlite" ? JOBS_PER_INSTANCE : undefined;
    return {
      /** What start-up prints as warnings: settings the platform made the gateway change, jobs kept per instance beside a Redis. */
      warnings: jobsNote === undefined ? deadlines.warnings : [...deadlines.warnings, jobsNote],
      /** The GPU servers, in the order given (at least one). */
      serverUrls: env.TEXT2IMAGE_SERVER_URL,
      /** The first of them: the one server of a single-server set-up. */
      serverUrl: env.TEXT2IMAGE_SERVER_URL[0] ?? new URL("http://localhost:8001"),
      requestTimeoutMs: deadlines.requestS * 1000,
      maxConcurrent: env.MAX_CONCURRENT_REQUESTS,
      maxQueue: env.MAX_QUEUE,
      queueTimeoutMs: deadlines.queueS * 1000,
      maxBodyBytes: env.MAX_BODY_BYTES,
      /** How long a request body may take to arrive, whole: a slow upload holds a socket and the drain. */
      bodyTimeoutMs: env.REQUEST_BODY_TIMEOUT * 1000,
      /** A response whose client takes none of it for this long is cut, and its memory freed. */
      sendTimeoutMs: env.SEND_TIMEOUT * 1000,
      /** Width and height must be multiples of it: the genuine pipeline fails other sizes with a 500. */
      sizeMultiple: env.SIZE_MULTIPLE,
      maxResponseBytes: env.MAX_RESPONSE_BYTES,
      sseKeepAliveMs: env.SSE_KEEPALIVE_INTERVAL * 1000,
      shutdownGraceMs: env.SHUTDOWN_GRACE * 1000,
      logLevel: env.LOG_LEVEL,
      logPrompts: env.LOG_PROMPTS,
      serverToken: env.TEXT2IMAGE_SERVER_TOKEN,
      apiKeys: env.GATEWAY_API_KEYS,
      rateLimitPerMinute: env.RATE_LIMIT_PER_MINUTE,
      /** Proxies trusted to append to X-Forwarded-For: 0 none, Infinity all (TRUST_PROXY=true). */
      trustedProxyHops: env.TRUST_PROXY,
      corsOrigins: env.CORS_ORIGINS,
      /** Set: one concurrency limit over every gateway sharing this Redis. */
      redisUrl: env.REDIS_URL,
      leaseTtlMs: env.LEASE_TTL * 1000,
      /** Redis unreachable: `local` limits per instance, `closed` refuses new work. */
      redisFailureMode: env.REDIS_FAILURE_MODE,
      /** Generations one GPU server may run at once (default: the gateway's whole MAX_CONCURRENT_REQUESTS). */
      maxConcurrentPerServer: env.MAX_CONCURRENT_PER_SERVER ?? env.MAX_CONCURRENT_REQUESTS,
      healthIntervalMs: env.HEALTH_INTERVAL * 1000,
      /** One GPU-server health answer serves every /api/health caller for this long: pollers cost the GPU server one call. */
      healthReuseMs: env.HEALTH_REUSE * 1000,
      ejectAfterFailures: env.EJECT_AFTER_FAILURES,
      ejectBaseMs: env.EJECT_BASE_SECONDS * 1000,
      ejectMaxMs: Math.max(env.EJECT_MAX_SECONDS, env.EJECT_BASE_SECONDS) * 1000,
      /** The jobs API (lib/jobs): off on Vercel, whose functions have no lasting disk, unless jobs are shared (Redis) or JOBS says otherwise. */
      jobs,
      /** Where jobs live: SQLite under DATA_DIR (this gateway's), or Redis (every gateway's): by default Redis when REDIS_URL is set and images are in a bucket. */
      jobStore,
      /** Set when REDIS_URL is but jobs stay per instance: how to share them. */
      jobsNote,
      /** The one model /v1/models names (the genuine server's default). */
      imageModelName: env.IMAGE_MODEL_NAME,
      /** Most images (`n`) one /v1/images/generations request may ask for. */
      maxImagesPerRequest: env.MAX_IMAGES_PER_REQUEST,
      /** Where clients reach the gateway, for absolute image URLs (else the request's own origin). */
      publicBaseUrl: env.PUBLIC_BASE_URL?.replace(/\/+$/, ""),
      /** Where jobs and their images live. */
      dataDir: env.DATA_DIR,
      jobTtlMs: env.JOB_TTL * 1000,
      dataMaxBytes: env.DATA_MAX_BYTES,
      /** Jobs kept at most: the oldest finished go to make room; with none finished, a new one is refused. */
      maxJobs: env.MAX_JOBS,
      /** Where images live: files under DATA_DIR, or a bucket every gateway can read. */
      imageStore:
        env.IMAGE_STORE === "s3"
          ? { kind: "s3" as const, bucket: env.S3_BUCKET ?? "", prefix: env.S3_PREFIX, endpoint: env.S3_ENDPOINT, forcePathStyle: env.S3_FORCE_PATH_STYLE }
          : { kind: "file" as const },
    };
  });

const JOBS_PER_INSTANCE =
  "jobs are kept per instance (JOB_STORE=sqlite under DATA_DIR) though REDIS_URL is set: to share them through that Redis, set IMAGE_STORE=s3 (an S3-compatible bucket), or JOB_STORE=redis with SHARED_DATA_DIR=true if DATA_DIR is storage every gateway shares";

/**
 * The generate routes' `maxDuration` (a literal there, as Next requires; a test
 * holds the two together): Vercel ends the function then, so the queue wait and
 * generation must end before, for the gateway's own 503 or 504 to be given.
 */
export const GENERATE_MAX_DURATION_S = 300;
/** Time left at the end of maxDuration to send the answer. */
export const FUNCTION_SLACK_S = 5;

function fitDeadlines(queueS: number, requestS: number, onVercel: boolean): { queueS: number; requestS: number; warnings: string[] } {
  const budget = GENERATE_MAX_DURATION_S - FUNCTION_SLACK_S;
  if (!onVercel || queueS + requestS <= budget) return { queueS, requestS, warnings: [] };
  // Both shrink in proportion: each keeps its share of the wait the operator meant.
  const scale = budget / (queueS + requestS);
  const fitted = { queueS: Math.floor(queueS * scale * 10) / 10, requestS: Math.floor(requestS * scale * 10) / 10 };
  const warning =
    `QUEUE_TIMEOUT + REQUEST_TIMEOUT (${queueS + requestS} s) do not fit in the generate routes' maxDuration (${GENERATE_MAX_DURATION_S} s), ` +
    `at which Vercel ends the function: using QUEUE_TIMEOUT=${fitted.queueS} and REQUEST_TIMEOUT=${fitted.requestS}; set them to at most ${budget} s together`;
  return { ...fitted, warnings: [warning] };
}

export type Config = z.output<typeof schema>;

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Parses an env object; empty strings count as unset, as in t3-env. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const present = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value.trim() !== ""),
  );
  const result = schema.safeParse(present);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const name = String(issue.path[0] ?? "");
    const shown = SECRET_VARIABLES.has(name) ? "(hidden)" : JSON.stringify(withoutCredentials(env[name] ?? ""));
    return `  ${name}=${shown}: ${issue.message}`;
  });
  throw new ConfigError(`Invalid gateway configuration:\n${lines.join("\n")}`);
}

/** Secrets never reach a log, even in a start-up error: keys and tokens are hidden, URL credentials dropped. */
const SECRET_VARIABLES = new Set(["GATEWAY_API_KEYS", "TEXT2IMAGE_SERVER_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]);

/** Drops `//` to the last `@` of each entry: a password may hold a raw `@`, `/` or `#`, and a hidden path beats a shown secret. */
function withoutCredentials(text: string): string {
  return text.replace(/\/\/[^,\s]*@/g, "//");
}

let cached: Config | undefined;

/** The process's configuration, parsed from process.env on first use. */
export function config(): Config {
  cached ??= parseConfig(process.env);
  return cached;
}
