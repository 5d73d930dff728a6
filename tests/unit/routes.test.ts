import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ROUTES, aliases, pageMatcher } from "@/lib/routes";
import { config as proxyConfig } from "@/proxy.vercel";
import { PAGE_MATCHER } from "@/lib/security/node-guard.mjs";
import { aliasFolders } from "../alias-folders";


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

  it("serves each original gateway path from a folder of its own that re-exports its entry's handlers and settings, and no other", () => {
    const folders = aliasFolders();
    expect(folders.map(({ source, destination }) => ({ source, destination }))).toEqual(expect.arrayContaining(aliases()));
    expect(aliases().map(({ source }) => source).sort()).toEqual(["/generate", "/generate-stream", "/health", "/metrics"]);
    expect(folders.length).toBe(aliases().length);
    for (const { source, destination, text } of folders) {
      const own = readFileSync(path.join(import.meta.dirname, "../../app", destination, "route.ts"), "utf8");
      expect(text, source).toContain("export { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } from");
      // Next reads a route's settings from its own file, not through a re-export.
      for (const setting of own.match(/^export const (?:dynamic|maxDuration) = .*$/gm) ?? []) expect(text, source).toContain(setting);
    }
  });

  it("gives the pages' guard and the Vercel proxy their matcher (literals, as Next reads the proxy's), keeping the API and every alias out", () => {
    const [matcher] = proxyConfig.matcher;
    expect(matcher?.source).toBe(pageMatcher());
    expect(PAGE_MATCHER).toBe(pageMatcher());
    const pattern = new RegExp(`^${pageMatcher()}$`);
    for (const page of ["/", "/docs", "/nope", "/healthz", "/generated"]) expect(pattern.test(page), page).toBe(true);
    for (const api of ["/api", "/api/generate", ...aliases().map(({ source }) => source), "/_next/static/x.js"]) {
      expect(pattern.test(api), api).toBe(false);
    }
  });
});
