import { fail } from "../errors";
import { registry } from "../registry";
import { clientAddress } from "./client";
import { isForeignBrowserRequest } from "./cors";
import type { HeaderList } from "./cors";
import { quotaHeaders } from "./rate-limit";

export type { HeaderList } from "./cors";

/**
 * Checks a request to a guarded route before its body is read: its site, its
 * API key, its share of RATE_LIMIT_PER_MINUTE (per key, else per address).
 * Throws the 403, 401 or 429; else returns its RateLimit-* headers.
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

/** The extra headers of an answer to a CORS preflight from an allowed origin. */
export function preflightHeaders(request: Request, methods: readonly string[]): HeaderList {
  if (!request.headers.has("access-control-request-method")) return [];
  return registry().access.cors.preflightHeaders(request.headers.get("origin"), methods);
}
