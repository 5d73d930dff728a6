import { trace } from "@opentelemetry/api";
import { ConfigError } from "./config";
import type { Config } from "./config";
import { settlesWithin } from "./shutdown";
import { GatewayError } from "./errors";
import { DataDirInUse } from "./jobs/store";
import { registry } from "./registry";

/**
 * What the server does at start (instrumentation.ts), before its first request. A bad configuration
 * stops it now, not at the first request: Next only logs a throwing register(), hence the exit.
 */
export async function startGateway(): Promise<void> {
  let gateway;
  try {
    gateway = registry();
    for (const warning of gateway.config.warnings) gateway.logger.warn(`configuration: ${warning}`);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    process.exit(1);
  }
  // From now on each request is stamped with its socket's address, for the rate limit (lib/security/client.ts).
  gateway.peerStamp();
  // The rate limit's Redis connection, made now rather than by the first request.
  await gateway.access.rateLimits.connected;
  handleShutdownSignals();
  await startJobsOrExit();
}

/** How long the image store may take to show it can be written, at start. */
const STORE_CHECK_MS = 10_000;

/**
 * Opens the job store (DATA_DIR, created if missing) and takes up what a
 * previous process left, so a queued job runs again without waiting for a
 * request; a DATA_DIR or an image store that cannot be written stops the
 * server now, naming the setting at fault.
 */
async function startJobsOrExit(): Promise<void> {
  const gateway = registry();
  if (!gateway.config.jobs) return;
  try {
    const checked = gateway.jobs.store.checkWritable();
    if (!(await settlesWithin(checked, STORE_CHECK_MS))) throw new Error(`no answer within ${STORE_CHECK_MS / 1000} s`);
    await checked;
  } catch (error) {
    console.error(error instanceof DataDirInUse ? error.message : `${storeSettings(gateway.config)} cannot hold jobs: ${describe(error instanceof GatewayError && error.cause ? error.cause : error)}`);
    process.exit(1);
  }
}

/** The settings of where images go, as an operator wrote them (no credential is among them). */
function storeSettings(config: Config): string {
  const store = config.imageStore;
  const images = store.kind === "file" ? `DATA_DIR=${config.dataDir}` : `IMAGE_STORE=s3 with S3_BUCKET=${store.bucket}${store.endpoint === undefined ? " (AWS S3)" : ` at S3_ENDPOINT=${store.endpoint}`}`;
  return config.jobStore === "redis" ? `JOB_STORE=redis (on REDIS_URL) and ${images}` : images;
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return error.message && error.message !== "UnknownError" ? `${error.name}: ${error.message}` : error.name;
}

/** After the grace period, how long cut-off requests get to send their 503 or error event before the exit. */
const SETTLE_MS = 1000;
/** How long each phase of closing connections (Registry.close) may take before the exit. */
const CLOSE_MS = 1000;
/** How long the last traces may take to leave before the exit. */
const TRACE_FLUSH_MS = 1000;

/**
 * On SIGTERM or SIGINT, drains (lib/shutdown.ts) and exits 0, in place of the
 * handler `next start` registers before register() runs (start-server.js):
 * that one closes the listening socket at once (new requests refused, not
 * answered 503), waits for every connection, idle ones included, and exits
 * 143. Only in production: `next dev` keeps its quick restart.
 */
function handleShutdownSignals(): void {
  if (process.env.NODE_ENV !== "production") return;
  for (const name of ["SIGTERM", "SIGINT"] as const) {
    for (const listener of process.listeners(name)) process.off(name, listener);
    process.on(name, (signal) => void drainAndExit(signal));
  }
}

async function drainAndExit(signal: NodeJS.Signals): Promise<void> {
  const gateway = registry();
  const { drain, logger } = gateway;
  // A repeated signal (a shell sends SIGINT to the whole process group) changes nothing.
  if (drain.draining) return;
  const startedAt = performance.now();
  const graceMs = gateway.config.shutdownGraceMs;
  logger.info({ signal, in_flight: drain.inFlight, grace_ms: graceMs }, "shutting down: draining");
  const outcome = await drain.drain(graceMs, SETTLE_MS);
  await gateway.close(CLOSE_MS);
  logger[outcome === "gave_up" ? "warn" : "info"]({ outcome, duration_ms: Math.round(performance.now() - startedAt) }, "shut down");
  // The spans still batched, which an exit would lose, are exported first; bounded, never failing.
  const provider = trace.getTracerProvider() as { getDelegate?: () => unknown };
  const tracing = (provider.getDelegate?.() ?? provider) as { forceFlush?: () => Promise<void> };
  await settlesWithin(tracing.forceFlush?.(), TRACE_FLUSH_MS);
  process.exit(0);
}
