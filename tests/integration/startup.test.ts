import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");

describe("start-up", () => {
  it.each([
    ["MAX_CONCURRENT_REQUESTS", "abc", "must be a whole number"],
    ["TEXT2IMAGE_SERVER_URL", "gpu-box:8001", "must be an http:// or https:// URL"],
    ["REQUEST_TIMEOUT", "0", "must be a number of seconds greater than 0"],
  ])("stops with a message naming %s when it is %j", (name, value, form) => {
    const result = spawnSync(process.execPath, [path.join(root, "node_modules/next/dist/bin/next"), "start", "-p", "0", "-H", "127.0.0.1"], {
      cwd: root,
      env: { ...process.env, NEXT_TELEMETRY_DISABLED: "1", [name]: value },
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(result.status).toBe(1);
    expect(result.stderr + result.stdout).toContain(`${name}=${JSON.stringify(value)}: ${form}`);
  });
});
