import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ZOD_JITLESS } from "@/app/zod-jitless";

const root = path.resolve(import.meta.dirname, "../..");

/**
 * In a fresh Node process, as in a fresh page: runs `firstScript`, then loads
 * zod and builds and uses an object schema, counting the Functions built from
 * strings meanwhile (what the CSP's script-src without 'unsafe-eval' reports).
 */
function functionsZodBuilds(firstScript: string): number {
  const program = `
    ${firstScript}
    let built = 0;
    const Original = globalThis.Function;
    globalThis.Function = new Proxy(Original, {
      construct(target, args) { built++; return Reflect.construct(target, args); },
      apply(target, self, args) { built++; return Reflect.apply(target, self, args); },
    });
    const { z } = await import("zod");
    z.object({ prompt: z.string(), width: z.number().int() }).parse({ prompt: "a fox", width: 512 });
    console.log(built);
  `;
  const result = spawnSync(process.execPath, ["--input-type=module", "-e", program], { cwd: root, encoding: "utf8" });
  if (result.status !== 0) throw new Error(result.stderr);
  return Number(result.stdout.trim());
}

describe("zod under the pages' CSP", () => {
  it("builds no Function from a string once the page's first script has run", () => {
    expect(functionsZodBuilds(ZOD_JITLESS)).toBe(0);
  });

  it("does build one without that script: the check can fail", () => {
    expect(functionsZodBuilds("")).toBeGreaterThan(0);
  });
});
