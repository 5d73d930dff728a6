/**
 * A .mjs, not a .ts: `next start` transpiles a next.config.ts with SWC's
 * native binding, 30 MB more resident memory for the server's whole life.
 * So the original gateway's paths are written out here, and
 * tests/unit/routes.test.ts holds them to the route table (lib/routes/).
 * @type {import('next').NextConfig}
 */
const nextConfig = {
  // The gateway relays megabytes of base64 that barely compress; gzip would
  // cost CPU per image for little gain. Put compression in the load balancer if wanted.
  compress: false,
  poweredByHeader: false,
  experimental: {
    // Load a route's code when it is first asked for, not all of them at start:
    // a gateway that mostly serves /api/generate need not hold the page, /docs
    // and the rest in memory (about 25 MB less at rest).
    preloadEntriesOnStart: false,
  },
  // On every answer, API included; the pages' Content-Security-Policy comes from proxy.ts (it needs a nonce per request).
  headers: () =>
    Promise.resolve([
      {
        source: "/:path*",
        headers: [
          { key: "X-Content-Type-Options", value: "nosniff" },
          { key: "Referrer-Policy", value: "no-referrer" },
          { key: "X-Frame-Options", value: "DENY" },
        ],
      },
    ]),
  // The original gateway's paths, for existing frontends: the same handlers as under /api (lib/routes/).
  rewrites: () =>
    Promise.resolve([
      { source: "/health", destination: "/api/health" },
      { source: "/metrics", destination: "/api/metrics" },
      { source: "/generate", destination: "/api/generate" },
      { source: "/generate-stream", destination: "/api/generate-stream" },
    ]),
};

export default nextConfig;
