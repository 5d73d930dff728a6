import "server-only";
import { limiter, limiterDegraded } from "./limiter";
import { shutdown } from "./shutdown";
import { reportedHealth, upstream } from "./upstream";
import type { HealthResult } from "./upstream";
import { canGenerate } from "./schemas";
import type { GatewayHealth } from "./schemas";

/**
 * The GPU servers' health, coalesced: callers during a probe share it, and its
 * answer is reused for a second, so many open pages cost one upstream call per
 * server. With several servers the background probe is the same call.
 */
export function upstreamHealth(): Promise<HealthResult> {
  return upstream().health();
}

/**
 * The body of GET /api/health: the gateway's own state and the GPU server's.
 * With several servers, `text2image_server` is their aggregate and `servers`
 * lists each one; with one, the body is the seed's. While draining for a
 * shutdown it is "degraded" with `shutting_down: true`, so balancers and
 * pages stop sending generations here.
 */
export async function healthReport(): Promise<GatewayHealth> {
  const balancer = upstream();
  const result = await balancer.health();
  const load = limiter().stats();
  // With Redis unreachable, `limiter` says so: "local (redis unreachable)".
  const healthy = result.ok && result.health.status === "healthy" && canGenerate(result.health) && !limiterDegraded(load);
  const draining = shutdown().draining;
  return {
    status: healthy && !draining ? "healthy" : "degraded",
    gateway: "running",
    ...load,
    orphaned: balancer.orphaned(),
    text2image_server: reportedHealth(result),
    ...(balancer.size > 1 ? { servers: balancer.states() } : {}),
    ...(draining ? { shutting_down: true as const } : {}),
  };
}
