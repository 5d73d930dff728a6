import "server-only";
import { limiter } from "./limiter";
import { processSingleton } from "./singleton";
import { upstream } from "./upstream";
import type { HealthResult } from "./upstream";
import type { GatewayHealth } from "./schemas";

/** How long one upstream health answer serves every caller. */
const REUSE_MS = 1000;

interface HealthCache {
  pending: Promise<HealthResult> | undefined;
  last: HealthResult | undefined;
  settledAt: number;
}

/**
 * The GPU server's health, coalesced: callers during a call share it, and its
 * answer is reused for a second, so many open pages cost one upstream call.
 */
export function upstreamHealth(): Promise<HealthResult> {
  const cache = processSingleton<HealthCache>("health", () => ({ pending: undefined, last: undefined, settledAt: 0 }));
  if (cache.pending) return cache.pending;
  if (cache.last && Date.now() - cache.settledAt < REUSE_MS) return Promise.resolve(cache.last);
  cache.pending = upstream()
    .health()
    .then((result) => {
      cache.last = result;
      cache.settledAt = Date.now();
      return result;
    })
    .finally(() => {
      cache.pending = undefined;
    });
  return cache.pending;
}

/** The body of GET /api/health: the gateway's own state and the GPU server's. */
export async function healthReport(): Promise<GatewayHealth> {
  const result = await upstreamHealth();
  const load = limiter().stats();
  const healthy = result.ok && result.health.status === "healthy";
  return {
    status: healthy ? "healthy" : "degraded",
    gateway: "running",
    ...load,
    text2image_server: result.ok ? result.health : { status: result.status, error: result.error },
  };
}
