/**
 * A .mjs, not a .ts: `next start` transpiles a next.config.ts with SWC's
 * native binding, 30 MB more resident memory for the server's whole life.
 * No rewrites(): the original gateway's paths are route folders of their own
 * (app/health/ and so on). headers() only on Vercel: Next matches its rules on
 * every request, so a server of ours sets them at Node's level instead
 * (lib/security/node-guard.mjs).
 */
import { SECURITY_HEADERS } from "./lib/security/node-guard.mjs";

/** @type {import('next').NextConfig} */
const nextConfig = {
  // The gateway relays megabytes of base64 that barely compress; gzip would
  // cost CPU per image for little gain. Put compression in the load balancer if wanted.
  compress: false,
  poweredByHeader: false,
  // Loaded from node_modules, once: bundled, each chunk that used them held a copy of its own (three in an idle gateway).
  serverExternalPackages: ["undici", "ioredis", "rate-limiter-flexible", "prom-client", "zod"],
  // proxy.vercel.ts is the proxy on Vercel only: a server of ours does its work in the Node-level guard,
  // where no matcher costs every API request its time (Next matches a proxy's on each one).
  ...(process.env.VERCEL && { pageExtensions: ["vercel.ts", "tsx", "ts", "jsx", "js"] }),
  experimental: {
    // Load a route's code when it is first asked for, not all of them at start:
    // a gateway that mostly serves /api/generate need not hold the page, /docs
    // and the rest in memory (about 25 MB less at rest).
    preloadEntriesOnStart: false,
  },
  ...(process.env.VERCEL && {
    headers: () => Promise.resolve([{ source: "/:path*", headers: SECURITY_HEADERS.map(([key, value]) => ({ key, value })) }]),
  }),
};

export default nextConfig;
