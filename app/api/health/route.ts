import { healthReport } from "@/lib/health";
import { headersOnly, route } from "@/lib/http";
import { registry } from "@/lib/registry";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";

const HEADERS = { "content-type": "application/json", "cache-control": "no-store" };

/** GET /api/health: always 200; `status` says whether the GPU server serves. HEAD asks no one. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.health, {
  GET: async () => new Response(JSON.stringify(await healthReport(registry())), { headers: HEADERS }),
  HEAD: () => headersOnly(HEADERS),
});
