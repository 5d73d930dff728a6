/**
 * Every endpoint, once: `path` is its folder under app/ (whose route.ts passes
 * the entry to `route()`), `alias` the original gateway's path, a rewrite. The
 * log and metric labels and the OpenAPI paths come from here; the rewrites
 * (next.config.mjs) and the proxy's matcher are literals, as Next reads them,
 * held to `rewrites()` and `pageMatcher()` by tests/unit/routes.test.ts.
 */
export interface RouteEntry {
  /** The handler's path (under /api, or /v1 for OpenAI's API), also its label in logs and metrics. */
  readonly path: string;
  /** The original gateway's path, rewritten to `path`. */
  readonly alias?: string;
  /** Polled by balancers, pages or Prometheus: a success is logged at debug, not info. */
  readonly polled?: boolean;
  /**
   * Behind GATEWAY_API_KEYS when set, and foreign sites' POSTs refused:
   * `generation` also takes one image of RATE_LIMIT_PER_MINUTE before the body
   * is read; `key` does not (its handlers take what they start: a job that is
   * no replay, OpenAI's `n` images).
   */
  readonly access?: "generation" | "key";
  /** Errors in OpenAI's shape, for its SDKs (else the gateway's `{"detail"}`). */
  readonly errors?: "openai";
}

export const ROUTES = {
  info: { path: "/api" },
  health: { path: "/api/health", alias: "/health", polled: true },
  generate: { path: "/api/generate", alias: "/generate", access: "generation" },
  generateStream: { path: "/api/generate-stream", alias: "/generate-stream", access: "generation" },
  metrics: { path: "/api/metrics", alias: "/metrics" },
  gatewayMetrics: { path: "/api/metrics/gateway", polled: true },
  openApi: { path: "/api/openapi.json" },
  jobs: { path: "/api/jobs", access: "key" },
  job: { path: "/api/jobs/[id]", access: "key" },
  jobCancel: { path: "/api/jobs/[id]/cancel", access: "key" },
  jobEvents: { path: "/api/jobs/[id]/events", access: "key" },
  image: { path: "/api/images/[name]" },
  /** Any other /api path: a JSON 404. */
  unknown: { path: "/api/[...path]" },
  openAiImages: { path: "/v1/images/generations", access: "key", errors: "openai" },
  /** OpenAI's edits and variations: a 400 that says why (the GPU server takes no input image). */
  openAiEdits: { path: "/v1/images/edits", access: "key", errors: "openai" },
  openAiVariations: { path: "/v1/images/variations", access: "key", errors: "openai" },
  openAiModels: { path: "/v1/models", access: "key", errors: "openai" },
  openAiModel: { path: "/v1/models/[...model]", access: "key", errors: "openai" },
  /** Any other /v1 path: OpenAI's 404. */
  openAiUnknown: { path: "/v1/[...path]", errors: "openai" },
} as const satisfies Record<string, RouteEntry>;

const ENTRIES: readonly RouteEntry[] = Object.values(ROUTES);

/** The original gateway's paths, for existing frontends: rewrites onto the same handlers. */
export function rewrites(): { source: string; destination: string }[] {
  return ENTRIES.flatMap((entry) => (entry.alias ? [{ source: entry.alias, destination: entry.path }] : []));
}

/** The proxy's matcher: every path but the API (under /api or an alias) and static files, which so pay nothing for the pages' CSP. */
export function pageMatcher(): string {
  const aliases = ENTRIES.flatMap((entry) => (entry.alias ? [`${entry.alias.slice(1)}$`] : []));
  return `/((?!api(?:/|$)|v1(?:/|$)|_next/static/|_next/image|favicon\\.ico$|${aliases.join("|")}).*)`;
}
