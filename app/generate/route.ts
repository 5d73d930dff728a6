/** The original gateway's POST /generate: the handlers of /api/generate, re-exported (Next reads a route's settings from its own file). */
export { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } from "../api/generate/route";

export const dynamic = "force-dynamic";
// Vercel ends a function at maxDuration; a generation may take minutes.
export const maxDuration = 300;
