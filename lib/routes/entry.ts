/**
 * A route table entry, and the parts its OpenAPI operations are made of: error
 * answers whose examples the error table writes (lib/errors.ts), examples
 * checked against their zod schemas as the document is built, so none can
 * drift from what the handlers do. zod-openapi turns the zod schemas into the
 * document's JSON Schemas and `$ref`s (lib/openapi.ts).
 */
import { z } from "zod";
import type { ZodOpenApiMediaTypeObject, ZodOpenApiOperationObject, ZodOpenApiResponseObject } from "zod-openapi";
import { ErrorBody, OpenAIErrorBody, ValidationErrorBody } from "../api-shapes";
import { parseConfig } from "../config";
import { fail, openAiError } from "../errors";
import type { GatewayError } from "../errors";

export type Method = "get" | "post";
export type Operation = ZodOpenApiOperationObject;
export type Response = ZodOpenApiResponseObject;

export interface RouteEntry {
  /** The handler's path (under /api, or /v1 for OpenAI's API), also its label in logs and metrics. */
  readonly path: string;
  /** The original gateway's path, rewritten to `path`. */
  readonly alias?: string;
  /** Polled by balancers, pages or Prometheus: a success is logged at debug, not info. */
  readonly polled?: boolean;
  /**
   * Behind GATEWAY_API_KEYS when set, and foreign sites' POSTs refused:
   * `generation` also takes one image of RATE_LIMIT_PER_MINUTE before the body
   * is read; `key` does not (its handlers take what they start: a job that is
   * no replay, OpenAI's `n` images).
   */
  readonly access?: "generation" | "key";
  /** Errors in OpenAI's shape, for its SDKs (else the gateway's `{"detail"}`). */
  readonly errors?: "openai";
  /** Its OpenAPI operations by method, made only when the document is built. */
  readonly operations?: () => Partial<Record<Method, Operation>>;
}

export const defaults = parseConfig({});
export const DEFAULT_SERVER = defaults.serverUrl.href.replace(/\/$/, "");

interface Example {
  summary: string;
  value: unknown;
}

/** An example, checked against its schema now rather than found wrong by a reader. */
export function checked(schema: z.ZodType, summary: string, value: unknown): Example {
  schema.parse(value);
  return { summary, value };
}

/** A JSON answer and its examples, each checked against the schema. */
export function json(description: string, schema: z.ZodType, examples: Record<string, [summary: string, value: unknown]> = {}): Response {
  const checkedExamples = Object.fromEntries(Object.entries(examples).map(([key, [summary, value]]) => [key, checked(schema, summary, value)]));
  return { description, content: { "application/json": { schema, examples: checkedExamples } } };
}

/** A text/event-stream as a sequence of `{data}` events: OpenAPI 3.2's sequential media types, which Scalar renders as SSE. */
export function eventStream(event: z.ZodType, examples: Record<string, [summary: string, events: unknown[]]> = {}): ZodOpenApiMediaTypeObject {
  const streams = Object.entries(examples).map(([key, [summary, events]]): [string, Example] => [key, { summary, value: events.map((data) => ({ data: checked(event, summary, data).value })) }]);
  return { schema: z.array(z.object({ data: event })), examples: Object.fromEntries(streams) };
}

export const BINARY = { schema: { type: "string", format: "binary" } } as const;

/** A header some answers of a status carry, not all: optional. */
const header = (id: string, description: string, example: string) => z.string().optional().meta({ header: { id, description, example } });
const RetryAfter = header(
  "RetryAfter",
  "Seconds to wait before retrying: sent by the gateway with its own 503s, or passed on from the GPU server",
  fail.queueFull().headers["Retry-After"] ?? "",
);
export const HEADERS = {
  retryAfter: z.object({ "Retry-After": RetryAfter }),
  allow: z.object({ Allow: header("Allow", "The methods this path serves", "POST") }),
  wwwAuthenticate: z.object({ "WWW-Authenticate": header("WWWAuthenticate", "How to send an API key", fail.apiKeyMissing().headers["WWW-Authenticate"] ?? "") }),
  rateLimited: z.object({
    "Retry-After": RetryAfter,
    "RateLimit-Limit": header("RateLimitLimit", "Images allowed per minute (RATE_LIMIT_PER_MINUTE)", "60"),
    "RateLimit-Remaining": header("RateLimitRemaining", "Images left now", "0"),
    "RateLimit-Reset": header("RateLimitReset", "Seconds until the window has room again", "7"),
  }),
};

export type ErrorExamples = Record<string, [summary: string, error: GatewayError]>;

/** An error answer whose examples the error table writes, in the gateway's `{detail}` or (under /v1) OpenAI's shape. */
export function errorResponse(status: number, description: string, examples: ErrorExamples, headers?: z.ZodObject, shape: "gateway" | "openai" = "gateway"): Response {
  const bodies = Object.entries(examples).map(([key, [summary, error]]): [string, Example] => {
    const answer = shape === "openai" ? openAiError(error) : { status: error.status, body: { detail: error.detail } };
    if (answer.status !== status) throw new Error(`OpenAPI example ${key} has status ${answer.status}, not ${status}`);
    return [key, { summary, value: answer.body }];
  });
  const schema = shape === "openai" ? OpenAIErrorBody : status === 422 ? ValidationErrorBody : ErrorBody;
  return { description, ...(headers ? { headers } : {}), content: { "application/json": { schema, examples: Object.fromEntries(bodies) } } };
}

/** An error of the /v1 routes, in OpenAI's shape. */
export function openAiErrorResponse(status: number, description: string, examples: ErrorExamples, headers?: z.ZodObject): Response {
  return errorResponse(status, description, examples, headers, "openai");
}

/** What any /v1 route may answer besides its own: no key or a wrong one, another method, a fault. */
export function openAiCommonErrors(allow: string[]): Record<number, Response> {
  return {
    401: openAiErrorResponse(401, "With GATEWAY_API_KEYS: no key, or a wrong one (`Authorization: Bearer <key>`)", { missing: ["No key", fail.apiKeyMissing()], invalid: ["A wrong key", fail.apiKeyInvalid()] }),
    405: openAiErrorResponse(405, "Another method", { methodNotAllowed: ["Another method", fail.methodNotAllowed(allow.includes("GET") ? "POST" : "GET", allow)] }, HEADERS.allow),
    500: openAiErrorResponse(500, "An unexpected fault in the gateway (logged)", { internal: ["Unexpected fault", fail.internal(null)] }),
  };
}

/** Answers any route can give: another method (405 with `Allow`) and an unexpected fault (500). */
export function commonErrors(method: Method, allow = method === "get" ? ["GET", "HEAD"] : ["POST"]): Record<number, Response> {
  const other = ["POST", "GET", "DELETE"].find((candidate) => !allow.includes(candidate)) ?? "DELETE";
  return {
    405: errorResponse(
      405,
      `Another method than ${allow.join(" or ")} on this path; \`Allow\` lists the ones served.`,
      { methodNotAllowed: [`${other} instead of ${allow.join(" or ")}`, fail.methodNotAllowed(other, allow)] },
      HEADERS.allow,
    ),
    500: errorResponse(500, "An unexpected fault in the gateway (logged; no internals are returned).", { internal: ["Unexpected fault", fail.internal(null)] }),
  };
}

/** Every jobs and images path, when JOBS=false. */
export function jobsOffError(): Record<number, Response> {
  return { 501: errorResponse(501, "Jobs are off on this gateway (JOBS=false, the default on Vercel).", { jobsOff: ["JOBS=false", fail.jobsOff()] }) };
}

/** What JSON.parse says of a text, as a malformed body's example. */
export function jsonParseError(text: string): string {
  try {
    JSON.parse(text);
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
  throw new Error(`${text} is valid JSON`);
}
