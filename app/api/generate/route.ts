import { generate } from "@/lib/gateway";
import { route } from "@/lib/http";

export const dynamic = "force-dynamic";
// Vercel ends a function at maxDuration; a generation may take minutes.
export const maxDuration = 300;

/**
 * POST /api/generate: one image, forwarded to the GPU server.
 * Needs an API key and takes a share of the rate limit when GATEWAY_API_KEYS /
 * RATE_LIMIT_PER_MINUTE are set, here and at the seed path (a rewrite to this handler).
 */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route({ POST: generate }, "/api/generate", { apiKey: true, rateLimit: true });
