import { healthReport } from "@/lib/health";
import { route } from "@/lib/http";
import { registry } from "@/lib/registry";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";

/** GET /api/health: always 200; `status` says whether the GPU server serves. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.health, {
  GET: async () => Response.json(await healthReport(registry()), { headers: { "cache-control": "no-store" } }),
});
