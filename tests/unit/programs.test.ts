/**
 * tests/programs.ts as `npm test` runs it first: a real process, with the
 * env overrides pointing where the test says.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");

function run(env: Record<string, string>) {
  const result = spawnSync(process.execPath, ["--import", "tsx", "tests/programs.ts"], { cwd: root, env: { ...process.env, ...env }, encoding: "utf8" });
  return { status: result.status, out: `${result.stdout}${result.stderr}` };
}

describe("the programs npm test needs", () => {
  it("says nothing and goes on when both are where their overrides say", () => {
    expect(run({ CHROMIUM_PATH: "/bin/sh", REDIS_SERVER_PATH: "/bin/sh" })).toEqual({ status: 0, out: "" });
  });

  it("stops at once with one line naming the command when an override points at nothing", () => {
    const { status, out } = run({ CHROMIUM_PATH: "/nonexistent/chromium", REDIS_SERVER_PATH: "/bin/sh" });
    expect(status).toBe(1);
    expect(out.trim().split("\n")).toHaveLength(1);
    expect(out).toContain("nothing executable at CHROMIUM_PATH=/nonexistent/chromium");
    expect(out).toContain("`sudo apt-get install -y chromium`");
  });
});
