import { healthReport } from "@/lib/health";
import { headersOnly, json, route } from "@/lib/http";
import { registry } from "@/lib/registry";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";

const NO_STORE = { "cache-control": "no-store" };

/** GET /api/health: always 200; `status` says whether the GPU server serves. HEAD asks no one. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.health, {
  GET: async () => json(await healthReport(registry()), 200, NO_STORE),
  HEAD: () => headersOnly({ "content-type": "application/json", ...NO_STORE }),
});
