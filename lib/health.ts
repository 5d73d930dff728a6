import type { LimiterStats } from "./limiter/types";
import type { Registry } from "./registry";
import { canGenerate } from "./schemas";
import type { GatewayHealth } from "./schemas";
import { reportedHealth } from "./upstream/server";

/**
 * The body of GET /api/health: the gateway's own state and the GPU server's.
 * With several servers, `text2image_server` is their aggregate and `servers`
 * lists each one; with one, the body is the original gateway's. While
 * draining for a shutdown it is "degraded" with `shutting_down: true`, so
 * balancers and pages stop sending generations here. The GPU servers'
 * health is coalesced: callers during a probe share it, and its answer is
 * reused for HEALTH_REUSE, so many open pages cost one call per server.
 */
export async function healthReport(gateway: Registry): Promise<GatewayHealth> {
  const balancer = gateway.upstream;
  const result = await balancer.health();
  const load = gateway.limiter.stats();
  // With Redis unreachable, `limiter` says so: "local (redis unreachable)".
  const healthy = result.ok && result.health.status === "healthy" && canGenerate(result.health) && !limiterDegraded(load);
  const draining = gateway.drain.draining;
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

/** True when REDIS_URL is set but Redis cannot be reached: the limit is per instance, or no new work is taken. */
function limiterDegraded(stats: LimiterStats): boolean {
  return stats.limiter !== undefined && stats.limiter !== "redis" && stats.limiter !== "local";
}
