import { trace } from "@opentelemetry/api";
import { ConfigError } from "./config";
import { registry } from "./registry";

/**
 * Parses the configuration at start-up, so a bad value stops the server
 * instead of failing the first request. Next only logs a throwing register()
 * and keeps serving, hence the explicit exit.
 */
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

const SIGNALS = ["SIGTERM", "SIGINT"] as const;
/** After the grace period, how long cut-off requests get to send their 503 or error event before the exit. */
const SETTLE_MS = 1000;
/** How long each phase of closing connections (Registry.close) may take before the exit. */
const CLOSE_MS = 1000;
/** How long the last traces may take to leave before the exit. */
const TRACE_FLUSH_MS = 1000;

/**
 * On SIGTERM or SIGINT, drains (lib/shutdown.ts) and exits 0. This replaces
 * Next's own handler, which `next start` registers before register() runs
 * (next/dist/server/lib/start-server.js, hence removing the listeners found
 * here): it closes the listening socket at once, so new requests are refused
 * instead of answered 503, waits until every connection has closed, idle
 * keep-alive ones included, and exits 143 (130 for SIGINT). Setting
 * NEXT_MANUAL_SIG_HANDLE=true stops Next from registering it at all. Only in
 * production: `next dev` keeps its own quick restart.
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
