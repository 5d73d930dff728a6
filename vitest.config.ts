import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/unit/**/*.test.ts", "tests/integration/**/*.test.ts"],
    // Integration files each start a `next start` process; two at a time suits a 2-core machine.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
  resolve: {
    alias: {
      "@": new URL(".", import.meta.url).pathname,
      // The marker that keeps server modules out of client bundles: the tests run them in plain Node, as the server does.
      "server-only": new URL("node_modules/server-only/empty.js", import.meta.url).pathname,
    },
  },
});
