import type { NextConfig } from "next";
import { rewrites } from "./lib/routes";

const nextConfig: NextConfig = {
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
  // The original gateway's paths, for existing frontends: the same handlers as under /api (lib/routes.ts).
  rewrites: () => Promise.resolve(rewrites()),
};

export default nextConfig;
