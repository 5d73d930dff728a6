import { generate } from "@/lib/gateway";
import { route } from "@/lib/http";

export const dynamic = "force-dynamic";
// Vercel ends a function at maxDuration; a generation may take minutes.
export const maxDuration = 300;

/** POST /api/generate: one image, forwarded to the GPU server. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route({ POST: generate }, "/api/generate");
