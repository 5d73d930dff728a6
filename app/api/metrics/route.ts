import { headersOnly, route, streamedJson } from "@/lib/http";
import { registry } from "@/lib/registry";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";

/**
 * GET /api/metrics: the GPU server's own metrics JSON, passed through. With
 * several servers, `{"servers": {"<url>": <its JSON> | {"error": "..."}}}`.
 */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.metrics, {
  GET: async () => streamedJson(await registry().upstream.metrics()),
  HEAD: () => headersOnly({ "content-type": "application/json" }),
});
