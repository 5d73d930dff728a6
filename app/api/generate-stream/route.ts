import { generateStream } from "@/lib/doors";
import { route } from "@/lib/http";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";
// Vercel ends a function at maxDuration; a generation may take minutes.
export const maxDuration = 300;

/** POST /api/generate-stream (and /generate-stream): one image, with queue and step progress as server-sent events. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.generateStream, { POST: generateStream });
