import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ROUTES, pageMatcher, rewrites } from "@/lib/routes";
import { config as proxyConfig } from "@/proxy";

const configPath = "../../next.config.mjs"; // a variable: the module has no types
const { default: nextConfig } = (await import(configPath)) as { default: { rewrites(): Promise<{ source: string; destination: string }[]> } };

/** Each route.ts under app/api and app/v1, as [its path, the ROUTES entry it passes to route() or observe()]. */
function routeFiles(): [string, string | undefined][] {
  return ["api", "v1"].flatMap((root) => {
    const dir = path.join(import.meta.dirname, "../../app", root);
    return readdirSync(dir, { recursive: true, encoding: "utf8" })
      .filter((file) => path.basename(file) === "route.ts")
      .map((file): [string, string | undefined] => {
        const folder = path.dirname(file);
        const source = readFileSync(path.join(dir, file), "utf8");
        return [folder === "." ? `/${root}` : `/${root}/${folder.split(path.sep).join("/")}`, /\b(?:route|observe)\(ROUTES\.(\w+)/.exec(source)?.[1]];
      });
  });
}

describe("the route table", () => {
  it("has one entry per route folder, whose path is the folder's", () => {
    const files = routeFiles();
    expect(files.length).toBe(Object.keys(ROUTES).length);
    for (const [folder, key] of files) {
      expect(key, folder).toBeDefined();
      expect(ROUTES[key as keyof typeof ROUTES].path, folder).toBe(folder);
    }
  });

  it("holds next.config.mjs's rewrites (a literal: a .ts config costs 30 MB of SWC at start) to the table: the original gateway's four paths", async () => {
    expect(await nextConfig.rewrites()).toEqual(rewrites());
    expect(rewrites()).toEqual([
      { source: "/health", destination: "/api/health" },
      { source: "/metrics", destination: "/api/metrics" },
      { source: "/generate", destination: "/api/generate" },
      { source: "/generate-stream", destination: "/api/generate-stream" },
    ]);
  });

  it("gives the proxy its matcher (which Next reads as a literal), keeping the API and every alias out", () => {
    const [matcher] = proxyConfig.matcher;
    expect(matcher?.source).toBe(pageMatcher());
    const pattern = new RegExp(`^${pageMatcher()}$`);
    for (const page of ["/", "/docs", "/nope", "/healthz", "/generated"]) expect(pattern.test(page), page).toBe(true);
    for (const api of ["/api", "/api/generate", ...rewrites().map(({ source }) => source), "/_next/static/x.js"]) {
      expect(pattern.test(api), api).toBe(false);
    }
  });
});
