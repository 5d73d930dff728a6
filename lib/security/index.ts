import { createHash } from "node:crypto";
import { fail } from "../errors";
import { registry } from "../registry";
import { clientAddress } from "./client";
import { isForeignBrowserRequest } from "./cors";
import type { HeaderList } from "./cors";

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

const CLIENT_TOKEN = /^[A-Za-z0-9_-]{16,128}$/;

/**
 * Whose jobs a request makes and lists. With API keys, the key's. Without,
 * an address is no one's identity (a NAT or a proxy puts many behind one), so
 * the client token the caller sends (`X-Client-Token`; the page keeps one per
 * browser) names them; without a token, its jobs are listed to no one and
 * reached by their ids alone, unguessable (an idempotency key stays the
 * address's own).
 */
export function jobOwner(request: Request, caller: string): { owner: string; listed: boolean } {
  if (registry().access.keys.required) return { owner: caller, listed: true };
  const token = request.headers.get("x-client-token");
  if (token === null) return { owner: caller, listed: false };
  if (!CLIENT_TOKEN.test(token)) throw fail.invalidHeader("X-Client-Token", "must be 16 to 128 letters, digits, - or _");
  return { owner: `token:${createHash("sha256").update(token).digest("base64url").slice(0, 22)}`, listed: true };
}

/** Takes `images` of the caller's RATE_LIMIT_PER_MINUTE: the 429 (nothing taken), or the RateLimit-* headers of its answer. */
export function takeRateLimit(caller: string, images = 1): Promise<HeaderList> {
  return registry().access.rateLimits.take(caller, images);
}
