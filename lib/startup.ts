import { trace } from "@opentelemetry/api";
import { ConfigError, config } from "./config";
import { peerStamp } from "./security/client";
import { shutdown } from "./shutdown";

/**
 * Parses the configuration at start-up, so a bad value stops the server
 * instead of failing the first request. Next only logs a throwing register()
 * and keeps serving, hence the explicit exit.
 */
export function checkConfigOrExit(): void {
  try {
    for (const warning of config().warnings) note("warn", `configuration: ${warning}`, {});
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    process.exit(1);
  }
}

/**
 * Puts the gateway in front of Node's http server from now on (see
 * lib/security/client.ts): each request stamped with its socket's address,
 * for the rate limit, and TRACE or `OPTIONS *` answered in JSON.
 */
export function guardRequestsFromStart(): void {
  peerStamp();
}

const SIGNALS = ["SIGTERM", "SIGINT"] as const;
/** After the grace period, how long cut-off requests get to send their 503 or error event before the exit. */
const SETTLE_MS = 1000;
/** How long each phase of closing connections (lib/shutdown.ts) may take before the exit. */
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
  const registry = shutdown();
  // A repeated signal (a shell sends SIGINT to the whole process group) changes nothing.
  if (registry.draining) return;
  const startedAt = performance.now();
  const graceMs = config().shutdownGraceMs;
  note("info", "shutting down: draining", { signal, in_flight: registry.inFlight, grace_ms: graceMs });
  const outcome = await registry.drain(graceMs, SETTLE_MS);
  await registry.closeAll(CLOSE_MS);
  note(outcome === "gave_up" ? "warn" : "info", "shut down", { outcome, duration_ms: Math.round(performance.now() - startedAt) });
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

const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"];

/** A lifecycle line in the request log's JSON shape, at LOG_LEVEL (the pino logger is for routes: server-only). */
function note(level: "info" | "warn", msg: string, fields: Record<string, unknown>): void {
  const threshold = config().logLevel;
  if (threshold === "silent" || LEVELS.indexOf(level) < LEVELS.indexOf(threshold)) return;
  console.log(JSON.stringify({ level, time: new Date().toISOString(), pid: process.pid, ...fields, msg }));
}
