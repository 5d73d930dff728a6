import path from "node:path";
import { pino } from "pino";
import type { DestinationStream, Logger } from "pino";
import { fail } from "./errors";
import { config } from "./config";
import type { Config } from "./config";
import { GatedLimiter } from "./limiter/gated";
import { LocalLimiter } from "./limiter/local";
import { RedisLimiter } from "./limiter/redis";
import type { Limiter } from "./limiter/types";
import { createMetrics } from "./observe/metrics";
import type { Metrics } from "./observe/metrics";
import { guardNodeServers } from "./security/client";
import type { PeerStamp } from "./security/client";
import { CorsPolicy } from "./security/cors";
import { ApiKeys } from "./security/keys";
import { RateLimiter } from "./security/rate-limit";
import { JobRunner } from "./jobs/runner";
import { FileImageStore, S3ImageStore } from "./jobs/images";
import type { ImageStore } from "./jobs/images";
import { RedisJobStore } from "./jobs/redis-store";
import { SqliteJobStore } from "./jobs/store";
import { Drain, settlesWithin } from "./shutdown";
import { Balancer } from "./upstream/balancer";

/**
 * Everything the process holds, built from one configuration, each part on
 * first use: logger, drain, limiter, pools, access rules, metrics. Next bundles
 * each route on its own, so the process's registry lives on globalThis, the
 * one thing they share; a test builds one from any configuration.
 */
export class Registry {
  #logger: Logger | undefined;
  #drain: Drain | undefined;
  #limiter: Limiter | undefined;
  #upstream: Balancer | undefined;
  #access: Access | undefined;
  #metrics: Metrics | undefined;
  #peerStamp: PeerStamp | undefined | null = null;
  #jobs: JobRunner | undefined;

  /** `logTo` is where the log lines go instead of stdout (a test's capture). */
  constructor(
    readonly config: Config,
    private readonly options: { logTo?: DestinationStream } = {},
  ) {}

  /** JSON lines on stdout at LOG_LEVEL, written synchronously so a line is out before the process may die. */
  get logger(): Logger {
    return (this.#logger ??= pino(
      {
        level: this.config.logLevel,
        base: { pid: process.pid },
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
      },
      this.options.logTo ?? pino.destination({ dest: 1, sync: true }),
    ));
  }

  /** The generations in flight, and the drain SIGTERM starts (lib/shutdown.ts). */
  get drain(): Drain {
    return (this.#drain ??= new Drain());
  }

  /** One limit over every gateway sharing REDIS_URL, else this process's own; either admits no more than the servers in rotation can take. */
  get limiter(): Limiter {
    if (this.#limiter) return this.#limiter;
    const settings = this.config;
    const limiter =
      settings.redisUrl === undefined
        ? new LocalLimiter(settings)
        : new GatedLimiter(
            new RedisLimiter({
              ...settings,
              redisUrl: settings.redisUrl,
              failureMode: settings.redisFailureMode,
              onModeChange: (mode, cause) => {
                if (mode === "redis") this.logger.info({ limiter: mode }, "limiter: Redis reachable, one limit over every gateway");
                else this.logger.warn({ limiter: mode, err: cause }, "limiter: Redis unreachable");
              },
            }),
            settings,
          );
    limiter.setCapacity(this.upstream.capacity());
    return (this.#limiter = limiter);
  }

  /** The GPU servers (TEXT2IMAGE_SERVER_URL, one or several), each with its pool, behind one balancer. */
  get upstream(): Balancer {
    return (this.#upstream ??= new Balancer(this.config.serverUrls, {
      ...this.config,
      onChange: ({ event, url, periodMs, failures }) => {
        if (event === "ejected") this.logger.warn({ server: url, ejected_for_ms: periodMs, consecutive_failures: failures }, "text-to-image server ejected");
        else this.logger.info({ server: url }, "text-to-image server back in rotation");
      },
      onCapacity: (capacity) => {
        this.limiter.setCapacity?.(capacity);
      },
      onOrphanEnd: ({ url, heldMs, reason }) => {
        const fields = { server: url, held_ms: Math.round(heldMs), reason };
        if (reason === "timeout") this.logger.warn(fields, "orphaned generation not seen done within REQUEST_TIMEOUT: its slot is freed");
        else this.logger.debug(fields, "orphaned generation done: its slot is freed");
      },
    }));
  }

  /** API keys, rate limits, allowed web origins (lib/security). */
  get access(): Access {
    return (this.#access ??= {
      keys: new ApiKeys(this.config.apiKeys),
      rateLimits: new RateLimiter({ perMinute: this.config.rateLimitPerMinute, redisUrl: this.config.redisUrl }),
      cors: new CorsPolicy(this.config.corsOrigins),
    });
  }

  /**
   * Jobs (lib/jobs), in SQLite and files under DATA_DIR; made at start, so
   * what a previous process left is taken up at once. With JOBS=false, every
   * jobs door answers 501.
   */
  get jobs(): JobRunner {
    if (this.#jobs) return this.#jobs;
    if (!this.config.jobs) throw fail.jobsOff();
    const { config } = this;
    const store =
      config.jobStore === "redis" && config.redisUrl !== undefined
        ? new RedisJobStore({ redisUrl: config.redisUrl, images: this.imageStore(), jobTtlMs: config.jobTtlMs, leaseTtlMs: config.leaseTtlMs })
        : new SqliteJobStore(config.dataDir, this.imageStore());
    this.#jobs = new JobRunner(this, store);
    void this.#jobs.resume().catch((error: unknown) => {
      this.logger.error({ err: error }, "jobs: taking up what the last process left failed");
    });
    return this.#jobs;
  }

  /** Where jobs' images live (IMAGE_STORE): files under DATA_DIR, or an S3-compatible bucket. */
  private imageStore(): ImageStore {
    const settings = this.config.imageStore;
    return settings.kind === "s3" ? new S3ImageStore(settings) : new FileImageStore(path.join(this.config.dataDir, "images"));
  }

  /** The jobs, if their store is open (metrics must not open it). */
  get openJobs(): JobRunner | undefined {
    return this.#jobs;
  }

  get metrics(): Metrics {
    return (this.#metrics ??= createMetrics(this));
  }

  /** The requests' peer stamp (lib/security/client.ts), the Node servers guarded from the first call; none on Vercel. */
  peerStamp(): PeerStamp | undefined {
    if (this.#peerStamp === null) this.#peerStamp = process.env.VERCEL ? undefined : guardNodeServers(this.config.sendTimeoutMs);
    return this.#peerStamp;
  }

  /** After the drain: the pools (orphans give back their slots), then the limiter (to Redis); a failure or hang does not stop the next. */
  async close(timeoutMs: number): Promise<void> {
    await settlesWithin(this.#upstream?.close(), timeoutMs);
    await settlesWithin(this.#limiter?.close?.(), timeoutMs);
    await settlesWithin(this.#access?.rateLimits.close(), timeoutMs);
    this.#jobs?.close();
    this.#jobs?.store.close();
  }
}

export interface Access {
  keys: ApiKeys;
  rateLimits: RateLimiter;
  cors: CorsPolicy;
}

const KEY = Symbol.for("text2image-gateway.registry");
const store = globalThis as typeof globalThis & { [KEY]?: Registry };

/** The process's registry, built from process.env on first use. */
export function registry(): Registry {
  return (store[KEY] ??= new Registry(config()));
}

/** Makes `replacement` the process's registry (an in-process test's, built from its own configuration). */
export function setRegistry(replacement: Registry): void {
  store[KEY] = replacement;
}
