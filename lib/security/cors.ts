/**
 * CORS for other frontends (CORS_ORIGINS). Empty: same origin only, no CORS
 * header. A listed origin is echoed with credentials; `*` lets any origin read,
 * never with credentials. Anything else gets none: the browser blocks it.
 */
export const CORS_ALLOWED_HEADERS = ["content-type", "authorization", "x-api-key", "x-client-token", "idempotency-key", "last-event-id", "prefer", "x-request-id", "traceparent", "tracestate"];
const ALLOWED_HEADERS = CORS_ALLOWED_HEADERS.join(", ");
const EXPOSED_HEADERS = [
  "x-request-id, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, www-authenticate",
  // An image answered as its own bytes carries its metadata in these (lib/doors.ts).
  "x-seed, x-generation-time-ms, x-image-id, x-image-sha256",
].join(", ");
/** Seconds a browser may cache a preflight answer (Chromium caps it at 7200). */
const MAX_AGE_SECONDS = "600";

export type HeaderList = [name: string, value: string][];

export class CorsPolicy {
  private readonly origins: Set<string>;
  private readonly anyOrigin: boolean;

  constructor(origins: readonly string[]) {
    this.anyOrigin = origins.includes("*");
    this.origins = new Set(origins.filter((origin) => origin !== "*"));
  }

  get enabled(): boolean {
    return this.anyOrigin || this.origins.size > 0;
  }

  allows(origin: string): boolean {
    return this.anyOrigin || this.origins.has(origin);
  }

  /** The CORS headers of a response to a request with this `Origin` (none when CORS is off). */
  responseHeaders(origin: string | null): HeaderList {
    if (!this.enabled) return [];
    // The answer depends on Origin whenever a list is configured: caches must keep them apart.
    if (origin === null || !this.allows(origin)) return [["Vary", "Origin"]];
    const exposed: [string, string] = ["Access-Control-Expose-Headers", EXPOSED_HEADERS];
    if (!this.origins.has(origin)) return [["Vary", "Origin"], ["Access-Control-Allow-Origin", "*"], exposed];
    return [["Vary", "Origin"], ["Access-Control-Allow-Origin", origin], ["Access-Control-Allow-Credentials", "true"], exposed];
  }

  /** The extra headers of an answer to a preflight (an OPTIONS with Access-Control-Request-Method): methods, request headers, cache time. None for an origin not allowed. */
  preflightHeaders(headers: Headers, methods: readonly string[]): HeaderList {
    const origin = headers.get("origin");
    if (origin === null || !headers.has("access-control-request-method") || !this.allows(origin)) return [];
    return [
      ["Access-Control-Allow-Methods", methods.join(", ")],
      ["Access-Control-Allow-Headers", ALLOWED_HEADERS],
      ["Access-Control-Max-Age", MAX_AGE_SECONDS],
    ];
  }
}

/**
 * Whether a browser sent this from a site CORS_ORIGINS does not list. A JSON
 * POST needs a preflight, which such a site fails, but a form or an untyped
 * fetch body skips it (and a body without Content-Type is taken as JSON):
 * `Sec-Fetch-Site` tells. Without it (older Safari), an `Origin` neither the
 * gateway's own (Host, or X-Forwarded-Host) nor listed is foreign; no Origin
 * at all (curl, servers) is no browser's cross-site request.
 */
export function isForeignBrowserRequest(headers: Headers, policy: CorsPolicy): boolean {
  const site = headers.get("sec-fetch-site");
  const origin = headers.get("origin");
  if (site === "cross-site" || site === "same-site") return origin === null || !policy.allows(origin);
  if (site !== null || origin === null) return false;
  return !isOwnOrigin(origin, headers) && !policy.allows(origin);
}

function isOwnOrigin(origin: string, headers: Headers): boolean {
  const host = URL.parse(origin)?.host;
  if (host === undefined) return false; // "null": a sandboxed frame, a file, a redirect across sites
  return host === headers.get("host") || host === headers.get("x-forwarded-host")?.split(",")[0]?.trim();
}
