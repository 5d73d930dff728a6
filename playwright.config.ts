import { defineConfig } from "@playwright/test";
import { nextStartArgs } from "./scripts/next-start";
import { chromiumPath } from "./tests/programs";
import { E2E_DATA_DIR, EMULATOR_PORT, EMULATOR_URL, GATEWAY_PORT, GATEWAY_URL, STEP_MS } from "./tests/e2e/servers";

/**
 * E2E: Debian's Chromium (never a downloaded browser) against the built
 * gateway (`next build` first) and the GPU-server emulator, on loopback.
 */
export default defineConfig({
  testDir: "tests/e2e",
  globalTeardown: "./tests/e2e/teardown.ts",
  outputDir: "test-results/e2e",
  workers: 1,
  fullyParallel: false,
  forbidOnly: Boolean(process.env.CI),
  retries: 0,
  timeout: 30_000,
  expect: { timeout: 5_000 },
  reporter: [["list"]],
  use: {
    baseURL: GATEWAY_URL,
    viewport: { width: 1280, height: 900 },
    screenshot: "on",
    trace: "retain-on-failure",
  },
  projects: [
    {
      name: "chromium",
      use: {
        browserName: "chromium",
        launchOptions: {
          executablePath: chromiumPath(),
          // As root on a closed network: without these, start-up stalls on refused connections.
          args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
          ],
        },
      },
    },
  ],
  webServer: [
    {
      name: "emulator",
      command: "node --import tsx emulator/main.ts",
      url: `${EMULATOR_URL}/health`,
      // A server that stops on a closed connection, so a cancelled generation frees the one slot at once for the next test.
      env: { EMULATOR_PORT: String(EMULATOR_PORT), EMULATOR_HOST: "127.0.0.1", EMULATOR_STEP_MS: String(STEP_MS), EMULATOR_ON_DISCONNECT: "stop" },
      reuseExistingServer: false,
      timeout: 30_000,
    },
    {
      name: "gateway",
      command: ["node", ...nextStartArgs("-p", String(GATEWAY_PORT), "-H", "127.0.0.1")].join(" "),
      url: `${GATEWAY_URL}/api`,
      // One GPU slot at the gateway, so a test can make the page wait in the queue.
      env: { TEXT2IMAGE_SERVER_URL: EMULATOR_URL, MAX_CONCURRENT_REQUESTS: "1", NEXT_TELEMETRY_DISABLED: "1", DATA_DIR: E2E_DATA_DIR },
      reuseExistingServer: false,
      timeout: 60_000,
    },
  ],
});
