import { z } from "zod";

/** Seconds, fractions allowed (tests use sub-second limits). */
const seconds = z.coerce
  .number({ error: "must be a number of seconds" })
  .positive({ error: "must be a number of seconds greater than 0" });

const count = (min: number) =>
  z.coerce
    .number({ error: "must be a whole number" })
    .int({ error: "must be a whole number" })
    .min(min, { error: `must be a whole number of at least ${min}` });

const serverUrl = z
  .url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" })
  .transform((value) => new URL(value));

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** Names are matched without regard to case: LOG_LEVEL=DEBUG works. */
const logLevel = z
  .string()
  .trim()
  .toLowerCase()
  .pipe(z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(", ")}` }));

const flag = z
  .string()
  .trim()
  .toLowerCase()
  .pipe(z.enum(["true", "false"], { error: "must be true or false" }))
  .transform((value) => value === "true");

const schema = z
  .object({
    TEXT2IMAGE_SERVER_URL: serverUrl.default(new URL("http://localhost:8001")),
    REQUEST_TIMEOUT: seconds.default(300),
    MAX_CONCURRENT_REQUESTS: count(1).default(10),
    MAX_QUEUE: count(0).default(100),
    QUEUE_TIMEOUT: seconds.optional(),
    MAX_BODY_BYTES: count(1).default(64 * 1024),
    MAX_RESPONSE_BYTES: count(1).default(64 * 1024 * 1024),
    SSE_KEEPALIVE_INTERVAL: seconds.default(15),
    LOG_LEVEL: logLevel.default("info"),
    LOG_PROMPTS: flag.default(false),
  })
  .transform((env) => ({
    serverUrl: env.TEXT2IMAGE_SERVER_URL,
    requestTimeoutMs: env.REQUEST_TIMEOUT * 1000,
    maxConcurrent: env.MAX_CONCURRENT_REQUESTS,
    maxQueue: env.MAX_QUEUE,
    queueTimeoutMs: (env.QUEUE_TIMEOUT ?? env.REQUEST_TIMEOUT) * 1000,
    maxBodyBytes: env.MAX_BODY_BYTES,
    maxResponseBytes: env.MAX_RESPONSE_BYTES,
    sseKeepAliveMs: env.SSE_KEEPALIVE_INTERVAL * 1000,
    logLevel: env.LOG_LEVEL,
    logPrompts: env.LOG_PROMPTS,
  }));

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
    const name = issue.path.join(".");
    return `  ${name}=${JSON.stringify(env[name] ?? "")}: ${issue.message}`;
  });
  throw new ConfigError(`Invalid gateway configuration:\n${lines.join("\n")}`);
}

let cached: Config | undefined;

/** The process's configuration, parsed from process.env on first use. */
export function config(): Config {
  cached ??= parseConfig(process.env);
  return cached;
}
