import { fail } from "../errors";
import { registry } from "../registry";
import { clientAddress } from "./client";
import { isForeignBrowserRequest } from "./cors";
import type { HeaderList } from "./cors";
import { quotaHeaders } from "./rate-limit";

export type { HeaderList } from "./cors";

/**
 * Checks a request to a route with access rules before its body is read: its
 * site, its API key. Throws the 403 or 401; else says who the caller is (the
 * key's id, or without keys the client's address), the owner of its jobs.
 */
export function admit(request: Request): string {
  const gateway = registry();
  const { keys, cors } = gateway.access;
  if (request.method !== "GET" && request.method !== "HEAD" && isForeignBrowserRequest(request.headers, cors)) {
    throw fail.originNotAllowed();
  }
  return keys.verify(request.headers) ?? `ip:${clientAddress(request.headers, gateway.peerStamp(), gateway.config.trustedProxyHops)}`;
}

/** Takes `images` of the caller's RATE_LIMIT_PER_MINUTE: the 429 (nothing taken), or the RateLimit-* headers of its answer. */
export function takeRateLimit(caller: string, images = 1): HeaderList {
  const { rateLimits } = registry().access;
  if (!rateLimits.enabled) return [];
  if (images > rateLimits.perMinute) {
    throw fail.invalidParameter("n", `${images} images are more than RATE_LIMIT_PER_MINUTE allows in a minute (${rateLimits.perMinute})`);
  }
  return Object.entries(quotaHeaders(rateLimits.take(caller, images)));
}

/** The extra headers of an answer to a CORS preflight from an allowed origin. */
export function preflightHeaders(request: Request, methods: readonly string[]): HeaderList {
  if (!request.headers.has("access-control-request-method")) return [];
  return registry().access.cors.preflightHeaders(request.headers.get("origin"), methods);
}
