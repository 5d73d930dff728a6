/** The original gateway's paths as app/ serves them: a top-level folder whose route.ts re-exports an /api route's handlers. */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";

export interface AliasFolder {
  source: string;
  destination: string;
  /** The route file's text. */
  text: string;
}

const APP = path.join(import.meta.dirname, "../app");

export function aliasFolders(): AliasFolder[] {
  return readdirSync(APP, { withFileTypes: true })
    // Every route folder at the top but the two roots of the API (/api's own route is GET /api).
    .filter((entry) => entry.isDirectory() && !["api", "v1"].includes(entry.name) && existsSync(path.join(APP, entry.name, "route.ts")))
    .map((entry) => {
      const text = readFileSync(path.join(APP, entry.name, "route.ts"), "utf8");
      const target = /from "\.\.\/(api\/[\w/-]+)\/route"/.exec(text)?.[1];
      return { source: `/${entry.name}`, destination: target === undefined ? "" : `/${target}`, text };
    });
}
