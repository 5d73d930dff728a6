/**
 * The integration files' `it`, with gateways that stop by themselves:
 *
 * - `startGateway` in a test: the gateway stops when the test ends, passed or failed;
 * - `startFileGateway` in `it.beforeAll` at a file's top: it stops once the
 *   file's tests are done (after its `afterAll` hooks).
 *
 * Each gateway gets a fresh DATA_DIR of its own, removed when it stops, unless
 * its env names one (see startGateway in harness.ts).
 */
import { test } from "vitest";
import { startGateway } from "./harness";
import type { Gateway, StartOptions } from "./harness";

export type StartGateway = (env: Record<string, string>, options?: StartOptions) => Promise<Gateway>;

/** Starts gateways, and registers one cleanup that stops every one it started. */
function starter(onCleanup: (cleanup: () => Promise<void>) => void): StartGateway {
  const started: Gateway[] = [];
  onCleanup(async () => {
    await Promise.all(started.splice(0).map((gateway) => gateway.stop()));
  });
  return async (env, options) => {
    const gateway = await startGateway(env, options);
    started.push(gateway);
    return gateway;
  };
}

export const it = test
  // Vitest reads what a fixture depends on from its first argument, which must be a destructuring pattern: `{}` for nothing.
  .extend("startFileGateway", { scope: "file" }, ({}, { onCleanup }) => starter(onCleanup))
  .extend("startGateway", ({}, { onCleanup }) => starter(onCleanup));
