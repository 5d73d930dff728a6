import packageJson from "@/package.json";
import { json, route } from "@/lib/http";
import { registry } from "@/lib/registry";
import { ROUTES } from "@/lib/routes";
import type { GatewayInfo } from "@/lib/api-shapes";

export const dynamic = "force-dynamic";

/** GET /api: what this service is (the original gateway's `GET /`). */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.info, {
  GET: () =>
    json({
      message: "Text-to-Image API Gateway",
      version: packageJson.version,
      status: "running",
      // One URL, or several joined by commas; never with credentials.
      text2image_server_url: registry().upstream.publicUrl,
      mode: "gateway",
      api_key_required: registry().access.keys.required,
      size_multiple: registry().config.sizeMultiple,
      jobs: registry().config.jobs,
    } satisfies GatewayInfo),
});
