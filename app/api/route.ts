import packageJson from "@/package.json";
import { config } from "@/lib/config";
import { route } from "@/lib/http";
import { apiKeyRequired } from "@/lib/security";
import type { GatewayInfo } from "@/lib/schemas";
import { upstream } from "@/lib/upstream";

export const dynamic = "force-dynamic";

/** GET /api: what this service is (the seed's `GET /`). */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route({
  GET: () =>
    Response.json({
      message: "Text-to-Image API Gateway",
      version: packageJson.version,
      status: "running",
      // One URL, or several joined by commas; never with credentials.
      text2image_server_url: upstream().publicUrl,
      mode: "gateway",
      api_key_required: apiKeyRequired(),
      size_multiple: config().sizeMultiple,
    } satisfies GatewayInfo),
}, "/api");
