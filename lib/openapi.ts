/**
 * The gateway's OpenAPI 3.1 document, built from the route table: each entry
 * declares its operations (lib/routes/), zod-openapi writes the schemas and
 * `$ref`s from the zod schemas the handlers parse and answer with, and every
 * original gateway path gets its /api operation under an id of its own.
 */
import { z } from "zod";
import { createDocument } from "zod-openapi";
import type { ZodOpenApiPathItemObject } from "zod-openapi";
import packageJson from "../package.json";
import { ROUTES } from "./routes";
import type { Method, Operation, RouteEntry } from "./routes/entry";

export type OpenApiDocument = ReturnType<typeof createDocument>;

/** The generate endpoints: open, or with one of the two key schemes when GATEWAY_API_KEYS is set. */
const OPTIONAL_API_KEY: Record<string, string[]>[] = [{}, { bearerKey: [] }, { apiKeyHeader: [] }];

/** The int fields, bigints, state their JSON Schema in metadata, whose `default` zod leaves out: it is put back. */
function keepStatedDefault({ zodSchema, jsonSchema }: { zodSchema: z.core.$ZodType; jsonSchema: Record<string, unknown> }): void {
  const stated = z.globalRegistry.get(zodSchema)?.default;
  if (stated !== undefined && jsonSchema.default === undefined) jsonSchema.default = stated;
}

/** The operationId of an endpoint's copy at its original gateway path. */
export function aliasOperationId(operationId: string): string {
  return `${operationId}AtOriginalPath`;
}

/** The gateway's OpenAPI 3.1 document: every endpoint under /api and at its original path. */
export function buildOpenApiDocument(): OpenApiDocument {
  const paths: Record<string, ZodOpenApiPathItemObject> = {};
  const aliases: Record<string, ZodOpenApiPathItemObject> = {};
  for (const route of Object.values(ROUTES) as RouteEntry[]) {
    // Next's [segment] and [...segments] are OpenAPI's {segment}.
    const path = route.path.replace(/\[(?:\.\.\.)?(\w+)\]/g, "{$1}");
    for (const [method, declared] of Object.entries(route.operations?.() ?? {}) as [Method, Operation][]) {
      const operation = { ...declared, ...(route.access ? { security: OPTIONAL_API_KEY } : {}) };
      paths[path] = { ...paths[path], [method]: operation };
      if (route.alias) {
        const description = `Same handler and answers as \`${method.toUpperCase()} ${path}\`. ${operation.description ?? ""}`;
        aliases[route.alias] = { ...aliases[route.alias], [method]: { ...operation, operationId: aliasOperationId(operation.operationId ?? ""), description, tags: ["original paths"] } };
      }
    }
  }
  return createDocument(
    {
      openapi: "3.1.0",
      info: {
        title: "Text-to-Image Gateway",
        version: packageJson.version,
        description: [
          "An API gateway in front of self-hosted text-to-image GPU servers (`text2image_server.py`).",
          "It validates every request before it reaches the GPU, limits how many generations run there at once (with a bounded FIFO queue), enforces timeouts and turns every failure into JSON `{\"detail\": ...}` — a string, or FastAPI's list for a 422.",
          "Examples show the default limits; the deployed gateway's own are set by its environment.",
        ].join("\n\n"),
      },
      tags: [
        { name: "generation", description: "Generate images on the GPU server" },
        { name: "service", description: "The gateway and the GPU server's state" },
        { name: "openai", description: "OpenAI's Images API, for its SDKs and the apps built on them: base URL `http(s)://<gateway>/v1`" },
        { name: "original paths", description: "The original gateway's paths, kept for existing frontends: the same handlers and answers as under /api" },
      ],
      paths: { ...paths, ...aliases },
      components: {
        securitySchemes: {
          bearerKey: { type: "http", scheme: "bearer", description: "`Authorization: Bearer <key>`, a key of GATEWAY_API_KEYS" },
          apiKeyHeader: { type: "apiKey", in: "header", name: "X-API-Key", description: "`X-API-Key: <key>`, a key of GATEWAY_API_KEYS" },
        },
      },
    },
    { override: keepStatedDefault },
  );
}
