/**
 * The import rules `npm run lint` holds the code to (dependency-cruiser):
 * no circle, type-only imports included; the domain (jobs, the pipeline, the
 * upstream calls, the limiter) imports no HTTP code; nothing imports the
 * composition root (lib/registry.ts) back but the HTTP layer that binds Next's
 * routes to it; the emulator (the stand-in GPU server the tests run against)
 * and the gateway share no code, so a fault in one is not mirrored by the other.
 */
const DOMAIN = "^lib/(jobs/|upstream/|limiter/|pipeline[.]ts$)";
const HTTP = "^lib/(http|doors|job-doors|openai)[.]ts$|^lib/security/index[.]ts$|next/(server|headers)";

module.exports = {
  forbidden: [
    { name: "no-circular", severity: "error", comment: "A module imports downward: a circle has no bottom.", from: {}, to: { circular: true } },
    { name: "domain-imports-no-http", severity: "error", comment: "The domain runs without HTTP.", from: { path: DOMAIN }, to: { path: HTTP } },
    {
      name: "parts-do-not-import-the-root",
      severity: "error",
      comment: "The composition root builds the parts and hands each what it needs.",
      from: { path: "^lib/(jobs|upstream|limiter|observe/metrics|pipeline|health|shutdown|config|errors|schemas)" },
      to: { path: "^lib/registry[.]ts$" },
    },
    { name: "gateway-apart-from-emulator", severity: "error", from: { path: "^(lib|app)/" }, to: { path: "^emulator/" } },
    { name: "emulator-apart-from-gateway", severity: "error", from: { path: "^emulator/" }, to: { path: "^(lib|app)/" } },
  ],
  options: {
    tsConfig: { fileName: "tsconfig.json" },
    // Type-only imports count: a circle of types is still a circle to read.
    tsPreCompilationDeps: true,
    doNotFollow: { path: "node_modules" },
    exclude: { path: "node_modules" },
  },
};
