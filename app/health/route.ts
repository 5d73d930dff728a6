/** The original gateway's GET /health: the handlers of /api/health, re-exported (Next reads a route's settings from its own file). */
export { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } from "../api/health/route";

export const dynamic = "force-dynamic";
