import type { Config } from "./config";
import type { JobRunner } from "./jobs/runner";
import type { Limiter } from "./limiter/types";
import type { Drain } from "./shutdown";
import type { Balancer } from "./upstream/balancer";
import { canGenerate } from "./schemas";
import type { GatewayHealth } from "./api-shapes";
import { reportedHealth } from "./upstream/server";

/** What health reads, handed down by the composition root: it never opens the job store. */
export interface HealthSources {
  readonly config: Pick<Config, "jobs" | "redisUrl" | "jobStore" | "jobsNote">;
  readonly drain: Pick<Drain, "draining">;
  readonly limiter: Pick<Limiter, "stats">;
  readonly upstream: Balancer;
  readonly openJobs: JobRunner | undefined;
}

/**
 * GET /api/health: the gateway's state and the GPU servers' (their aggregate
 * and `servers` with several; the original gateway's body with one). Draining,
 * it is "degraded" with `shutting_down: true`, so balancers send elsewhere.
 * One upstream call per server serves every caller for HEALTH_REUSE.
 */
export async function healthReport(gateway: HealthSources): Promise<GatewayHealth> {
  const balancer = gateway.upstream;
  const result = await balancer.health();
  const load = gateway.limiter.stats();
  // With REDIS_URL set and Redis unreachable, `limiter` says so: "local (redis unreachable)".
  const limiterDegraded = load.limiter !== undefined && load.limiter !== "redis" && load.limiter !== "local";
  const healthy = result.ok && result.health.status === "healthy" && canGenerate(result.health) && !limiterDegraded;
  const draining = gateway.drain.draining;
  // The disk of DATA_DIR found full: jobs are refused until it has room.
  const storageFull = gateway.openJobs?.space.isFull ?? false;
  const jobs = jobsHealth(gateway);
  return {
    status: healthy && !draining && !storageFull && jobs?.reachable !== false ? "healthy" : "degraded",
    gateway: "running",
    ...load,
    orphaned: balancer.orphaned(),
    text2image_server: reportedHealth(result),
    ...(balancer.size > 1 ? { servers: balancer.states() } : {}),
    ...(draining ? { shutting_down: true as const } : {}),
    ...(storageFull ? { storage_full: true as const } : {}),
    ...(jobs ? { jobs } : {}),
  };
}

/** With REDIS_URL: where jobs live, and whether every gateway sees them; read from the configuration and the open store (health never opens it). */
function jobsHealth({ config, openJobs }: HealthSources): GatewayHealth["jobs"] {
  // One gateway with no Redis: jobs are its own, as they always were; nothing to say.
  if (!config.jobs || config.redisUrl === undefined) return undefined;
  if (config.jobStore === "redis") return { store: "redis", shared: true, reachable: openJobs?.store.shared?.reachable ?? true };
  return { store: "sqlite", shared: false, ...(config.jobsNote === undefined ? {} : { note: config.jobsNote }) };
}
