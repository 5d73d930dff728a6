import "server-only";
import { config } from "../config";
import { fail } from "../errors";
import { processSingleton } from "../singleton";
import { clientAddress, peerStamp } from "./client";
import { CorsPolicy, isForeignBrowserRequest } from "./cors";
import type { HeaderList } from "./cors";
import { ApiKeys } from "./keys";
import { RateLimiter, quotaHeaders } from "./rate-limit";

export type { HeaderList } from "./cors";

/** What a route asks of its callers, beyond a valid request. */
export interface AccessRules {
  /** An API key from GATEWAY_API_KEYS, when that is set. */
  apiKey?: boolean;
  /** A share of RATE_LIMIT_PER_MINUTE, when that is set: per key, or per client address without keys. */
  rateLimit?: boolean;
}

interface Security {
  keys: ApiKeys;
  limiter: RateLimiter;
  cors: CorsPolicy;
}

function security(): Security {
  return processSingleton("security", () => {
    const { apiKeys, rateLimitPerMinute, corsOrigins } = config();
    return { keys: new ApiKeys(apiKeys), limiter: new RateLimiter({ perMinute: rateLimitPerMinute }), cors: new CorsPolicy(corsOrigins) };
  });
}

/** Whether requests to the generate endpoints must carry a key (GET /api says so to the page). */
export function apiKeyRequired(): boolean {
  return security().keys.required;
}

/**
 * Checks a request against the route's rules before anything else happens to
 * it (no body read, no upstream call): the site it comes from, its key, its
 * rate limit. Throws the error table's 403, 401 or 429; on success, returns
 * the headers its answer carries (RateLimit-*).
 */
export function admit(request: Request, rules: AccessRules): HeaderList {
  const { keys, limiter, cors } = security();
  if (request.method !== "GET" && request.method !== "HEAD" && isForeignBrowserRequest(request.headers, cors)) {
    throw fail.originNotAllowed();
  }
  const keyId = rules.apiKey ? keys.verify(request.headers) : undefined;
  if (!rules.rateLimit || !limiter.enabled) return [];
  const client = keyId ?? `ip:${clientAddress(request.headers, peerStamp(), config().trustedProxyHops)}`;
  return Object.entries(quotaHeaders(limiter.take(client)));
}

/** CORS headers for any API answer (none unless CORS_ORIGINS is set). */
export function corsHeaders(request: Request): HeaderList {
  return security().cors.responseHeaders(request.headers.get("origin"));
}

/** The extra headers of an answer to a CORS preflight from an allowed origin. */
export function preflightHeaders(request: Request, methods: readonly string[]): HeaderList {
  if (!request.headers.has("access-control-request-method")) return [];
  return security().cors.preflightHeaders(request.headers.get("origin"), methods);
}
