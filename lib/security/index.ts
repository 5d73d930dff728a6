import { fail } from "../errors";
import { registry } from "../registry";
import { clientAddress } from "./client";
import { isForeignBrowserRequest } from "./cors";
import type { HeaderList } from "./cors";
import { quotaHeaders } from "./rate-limit";

export type { HeaderList } from "./cors";

/** Whether requests to the generate endpoints must carry a key (GET /api says so to the page). */
export function apiKeyRequired(): boolean {
  return registry().access.keys.required;
}

/**
 * Checks a request to a guarded route before anything else happens to it (no
 * body read, no upstream call): the site it comes from, its API key
 * (GATEWAY_API_KEYS), its share of RATE_LIMIT_PER_MINUTE (per key, or per
 * client address without keys). Throws the error table's 403, 401 or 429; on
 * success, returns the headers its answer carries (RateLimit-*).
 */
export function admit(request: Request): HeaderList {
  const gateway = registry();
  const { keys, rateLimits, cors } = gateway.access;
  if (request.method !== "GET" && request.method !== "HEAD" && isForeignBrowserRequest(request.headers, cors)) {
    throw fail.originNotAllowed();
  }
  const keyId = keys.verify(request.headers);
  if (!rateLimits.enabled) return [];
  const client = keyId ?? `ip:${clientAddress(request.headers, gateway.peerStamp(), gateway.config.trustedProxyHops)}`;
  return Object.entries(quotaHeaders(rateLimits.take(client)));
}

/** CORS headers for any API answer (none unless CORS_ORIGINS is set). */
export function corsHeaders(request: Request): HeaderList {
  return registry().access.cors.responseHeaders(request.headers.get("origin"));
}

/** The extra headers of an answer to a CORS preflight from an allowed origin. */
export function preflightHeaders(request: Request, methods: readonly string[]): HeaderList {
  if (!request.headers.has("access-control-request-method")) return [];
  return registry().access.cors.preflightHeaders(request.headers.get("origin"), methods);
}
