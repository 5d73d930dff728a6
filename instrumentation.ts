/** Runs once at server start (Next's instrumentation hook). */
export async function register(): Promise<void> {
  // The Node-only import keeps process.exit out of the Edge bundle.
  if (process.env.NEXT_RUNTIME === "nodejs") {
    const { checkConfigOrExit } = await import("./lib/startup");
    checkConfigOrExit();
  }
}
