import { trace } from "@opentelemetry/api";
import { ConfigError } from "./config";
import { DataDirInUse } from "./jobs/store";
import { registry } from "./registry";

/** A bad configuration stops the server at start, not the first request: Next only logs a throwing register(), hence the exit. */
export function checkConfigOrExit(): void {
  try {
    const gateway = registry();
    for (const warning of gateway.config.warnings) gateway.logger.warn(`configuration: ${warning}`);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    process.exit(1);
  }
}

/**
 * Opens the job store (DATA_DIR, created if missing) and takes up what a
 * previous process left, so a queued job runs again without waiting for a
 * request; a DATA_DIR that cannot be written stops the server now.
 */
export function startJobsOrExit(): void {
  const gateway = registry();
  if (!gateway.config.jobs) return;
  try {
    gateway.jobs.store.checkWritable();
  } catch (error) {
    console.error(error instanceof DataDirInUse ? error.message : `DATA_DIR=${gateway.config.dataDir} cannot hold jobs: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
}

const SIGNALS = ["SIGTERM", "SIGINT"] as const;
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
export function handleShutdownSignals(): void {
  if (process.env.NODE_ENV !== "production") return;
  for (const name of SIGNALS) {
    for (const listener of process.listeners(name)) process.off(name, listener);
    process.on(name, onSignal);
  }
}

function onSignal(signal: NodeJS.Signals): void {
  void drainAndExit(signal);
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
  await flushTraces();
  process.exit(0);
}

/** Exports the spans still batched, which an exit would lose; bounded, never failing. */
async function flushTraces(): Promise<void> {
  const provider = trace.getTracerProvider() as { getDelegate?: () => unknown };
  const actual = (provider.getDelegate?.() ?? provider) as { forceFlush?: () => Promise<void> };
  if (typeof actual.forceFlush !== "function") return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    actual.forceFlush().catch(() => undefined),
    new Promise((resolve) => {
      timer = setTimeout(resolve, TRACE_FLUSH_MS);
    }),
  ]);
  clearTimeout(timer);
}
