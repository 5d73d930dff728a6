import { generate } from "@/lib/doors";
import { route } from "@/lib/http";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";
// Vercel ends a function at maxDuration; a generation may take minutes.
export const maxDuration = 300;

/** POST /api/generate (and /generate): one image, forwarded to the GPU server. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.generate, { POST: generate });
