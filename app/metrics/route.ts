/** The original gateway's GET /metrics: the handlers of /api/metrics, re-exported (Next reads a route's settings from its own file). */
export { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } from "../api/metrics/route";

export const dynamic = "force-dynamic";
