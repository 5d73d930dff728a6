/**
 * Deliberately empty. Without an instrumentation file of its own, Turbopack
 * (Next 16.4) compiles the root project's instrumentation.ts into this app,
 * which would register OpenTelemetry in the baseline too.
 */
export function register(): void {
  // no tracing, no config check: the baseline is a bare Next.js app
}
