import { headersOnly, route } from "@/lib/http";
import { registry } from "@/lib/registry";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";

/** GET /api/metrics/gateway: the gateway's own metrics, in Prometheus text format. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.gatewayMetrics, {
  GET: async () => {
    const metrics = registry().metrics.registry;
    return new Response(await metrics.metrics(), { headers: { "content-type": metrics.contentType, "cache-control": "no-store" } });
  },
  HEAD: () => headersOnly({ "content-type": registry().metrics.registry.contentType, "cache-control": "no-store" }),
});
