import { healthReport } from "@/lib/health";
import { route } from "@/lib/http";

export const dynamic = "force-dynamic";

/** GET /api/health: always 200; `status` says whether the GPU server serves. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route({
  GET: async () => Response.json(await healthReport(), { headers: { "cache-control": "no-store" } }),
}, "/api/health");
