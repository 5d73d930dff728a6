import { registerOTel } from "@vercel/otel";

/** Runs once at server start (Next's instrumentation hook). */
export async function register(): Promise<void> {
  // Traces always carry W3C context to the GPU server; they leave the process
  // only when an OTLP endpoint is configured (the standard OTEL_* variables).
  const exporting = Boolean(process.env.OTEL_EXPORTER_OTLP_ENDPOINT ?? process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
  registerOTel({
    serviceName: process.env.OTEL_SERVICE_NAME || "text2image-gateway",
    spanProcessors: exporting ? ["auto"] : [],
  });
  // The Node-only import keeps process.exit and signal handling out of the Edge bundle.
  if (process.env.NEXT_RUNTIME === "nodejs") {
    const { checkConfigOrExit, handleShutdownSignals } = await import("./lib/startup");
    checkConfigOrExit();
    handleShutdownSignals();
  }
}
