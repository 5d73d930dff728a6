import "server-only";
import { config } from "../config";
import { logger } from "../observe/log";
import { shutdown } from "../shutdown";
import { processSingleton } from "../singleton";
import { LocalLimiter } from "./local";
import { RedisLimiter } from "./redis";
import type { Limiter, LimiterStats } from "./types";

export type { Limiter, LimiterMode, LimiterStats, Slot } from "./types";

/**
 * The process's limiter, built from the configuration on first use: one
 * limit over every gateway sharing REDIS_URL when it is set, else this
 * process's own.
 */
export function limiter(): Limiter {
  return processSingleton("limiter", () => {
    const settings = config();
    if (settings.redisUrl === undefined) {
      const local = new LocalLimiter(settings);
      // Until the balancer says otherwise (lib/upstream/index.ts), every server is in rotation.
      local.setCapacity(settings.maxConcurrentPerServer * settings.serverUrls.length);
      return local;
    }
    const shared = new RedisLimiter({
      ...settings,
      redisUrl: settings.redisUrl,
      failureMode: settings.redisFailureMode,
      onModeChange: (mode, cause) => {
        if (mode === "redis") logger().info({ limiter: mode }, "limiter: Redis reachable, one limit over every gateway");
        else logger().warn({ limiter: mode, err: cause }, "limiter: Redis unreachable");
      },
    });
    shutdown().closeOnExit("limiter", () => shared.close());
    return shared;
  });
}

/** True when REDIS_URL is set but Redis cannot be reached: the limit is per instance, or no new work is taken. */
export function limiterDegraded(stats: LimiterStats): boolean {
  return stats.limiter !== undefined && stats.limiter !== "redis" && stats.limiter !== "local";
}
