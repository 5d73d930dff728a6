import { json, route } from "@/lib/http";
import { buildOpenApiDocument } from "@/lib/openapi";
import type { OpenApiDocument } from "@/lib/openapi";
import { ROUTES } from "@/lib/routes";

// The document depends on the code only: build it once per process.
let built: OpenApiDocument | undefined;

/** GET /api/openapi.json: the OpenAPI 3.1 document of every endpoint, generated from the zod schemas. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.openApi, {
  GET: () => json((built ??= buildOpenApiDocument())),
});
