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
    // One import: each import() here is a chunk of its own, holding all it needs (a second copy of the gateway's code).
    const { startGateway } = await import("./lib/startup");
    await startGateway();
  }
}
