/** Runs once at server start (Next's instrumentation hook). */
export async function register(): Promise<void> {
  // Tracing is on only where traces can go (an OTLP endpoint, or Vercel's
  // collector): an SDK with nowhere to send spans still cost about 2 ms of CPU
  // per image in the benchmark (README, Benchmarks). Without it, an incoming
  // traceparent is passed to the GPU server as it came (lib/upstream/tracing.ts).
  const exporting = Boolean(
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT ?? process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? process.env.VERCEL_OTEL_ENDPOINTS,
  );
  if (exporting) {
    // Imported only here: the SDK is not even loaded when tracing is off.
    const { registerOTel } = await import("@vercel/otel");
    registerOTel({ serviceName: process.env.OTEL_SERVICE_NAME || "text2image-gateway" });
  }
  // The Node-only import keeps process.exit and signal handling out of the Edge bundle.
  if (process.env.NEXT_RUNTIME === "nodejs") {
    const { checkConfigOrExit, handleShutdownSignals, startJobsOrExit } = await import("./lib/startup");
    const { registry } = await import("./lib/registry");
    checkConfigOrExit();
    // From now on each request is stamped with its socket's address, for the rate limit (lib/security/client.ts).
    registry().peerStamp();
    // The rate limit's Redis connection, made now rather than by the first request.
    await registry().access.rateLimits.connected;
    handleShutdownSignals();
    await startJobsOrExit();
  }
}
