/**
 * Every endpoint, once: `path` is its folder under app/ (whose route.ts passes
 * the entry to `route()`), `alias` the original gateway's path (a folder of
 * its own, app/health/ and so on, that re-exports the handlers), and
 * `operations` its OpenAPI operations, from which lib/openapi.ts builds the
 * document. The log and metric labels come from here too; the pages' matcher
 * (node-guard.mjs, proxy.vercel.ts) is a literal, as Next reads it, held to `pageMatcher()` by
 * tests/unit/routes.test.ts, which also holds the alias folders to the table.
 */
import type { RouteEntry } from "./entry";
import { GENERATION_ROUTES } from "./generation";
import { JOB_ROUTES } from "./jobs";
import { OPENAI_ROUTES } from "./openai";
import { SERVICE_ROUTES } from "./service";

export type { RouteEntry } from "./entry";

export const ROUTES = {
  ...SERVICE_ROUTES,
  ...GENERATION_ROUTES,
  ...JOB_ROUTES,
  ...OPENAI_ROUTES,
  /** Any other /api path: a JSON 404. */
  unknown: { path: "/api/[...path]" },
  /** Any other /v1 path: OpenAI's 404. */
  openAiUnknown: { path: "/v1/[...path]", errors: "openai" },
} as const satisfies Record<string, RouteEntry>;

const ENTRIES: readonly RouteEntry[] = Object.values(ROUTES);

/** The original gateway's paths, for existing frontends: the same handlers as `destination`'s. */
export function aliases(): { source: string; destination: string }[] {
  return ENTRIES.flatMap((entry) => (entry.alias ? [{ source: entry.alias, destination: entry.path }] : []));
}

/** The pages' matcher: every path but the API (under /api or an alias) and static files, which so pay nothing for the pages' CSP. */
export function pageMatcher(): string {
  const aliases = ENTRIES.flatMap((entry) => (entry.alias ? [`${entry.alias.slice(1)}$`] : []));
  return `/((?!api(?:/|$)|v1(?:/|$)|_next/static/|_next/image|favicon\\.ico$|${aliases.join("|")}).*)`;
}
