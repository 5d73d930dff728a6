/**
 * A module imports downward: the domain (jobs, the pipeline, the upstream
 * calls, the limiter) runs without HTTP, so none of it imports the doors, the
 * HTTP helpers or Next's request APIs.
 */
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");
const DOMAIN = ["lib/jobs", "lib/pipeline.ts", "lib/upstream", "lib/limiter"];
const HTTP = ["lib/http.ts", "lib/doors.ts", "lib/job-doors.ts", "lib/openai.ts", "lib/security/index.ts"].map((file) => path.join(root, file));
const HTTP_PACKAGES = ["next/server", "next/headers"];

function sources(entry: string): string[] {
  const full = path.join(root, entry);
  if (entry.endsWith(".ts")) return [full];
  return readdirSync(full, { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(".ts"))
    .map((file) => path.join(full, file));
}

/** What a file imports at run time (`import type` left out), resolved to files where relative. */
function runtimeImports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/^import\s+(?!type\b)[^;]*?from\s+"([^"]+)";/gms)].map(([, target = ""]) => {
    if (!target.startsWith(".")) return target;
    const base = path.resolve(path.dirname(file), target);
    return [`${base}.ts`, path.join(base, "index.ts")].find((candidate) => HTTP.includes(candidate)) ?? `${base}.ts`;
  });
}

describe("layers", () => {
  it.each(DOMAIN)("%s imports no HTTP code", (entry) => {
    const offending = sources(entry).flatMap((file) =>
      runtimeImports(file)
        .filter((target) => HTTP.includes(target) || HTTP_PACKAGES.includes(target))
        .map((target) => `${path.relative(root, file)} → ${path.relative(root, target) || target}`),
    );
    expect(offending).toEqual([]);
  });

  it("sees an import of HTTP code where there is one", () => {
    expect(runtimeImports(path.join(root, "lib/job-doors.ts"))).toContain(path.join(root, "lib/http.ts"));
  });
});
