/**
 * The built OpenAPI document, read through the shape the tests rely on
 * (tests/unit/openapi.test.ts also validates it against OpenAPI 3.1's own schema).
 */
import { buildOpenApiDocument } from "@/lib/openapi";

export type JsonSchema = Record<string, unknown>;
export type Method = "get" | "post";

export interface MediaType {
  schema: JsonSchema;
  examples?: Record<string, { summary: string; value: unknown; "x-expected-status"?: number }>;
}

export interface Operation {
  operationId: string;
  description: string;
  tags: string[];
  requestBody?: { content: Record<string, MediaType> };
  responses: Record<string, { description: string; headers?: Record<string, { $ref: string }>; content?: Record<string, MediaType> }>;
  security?: Record<string, string[]>[];
}

export interface OpenApiDocument {
  paths: Record<string, Partial<Record<Method, Operation>>>;
  components: {
    schemas: Record<string, JsonSchema>;
    headers: Record<string, { description: string; schema: JsonSchema; example?: string }>;
    securitySchemes: Record<string, unknown>;
  };
}

export function readDocument(): OpenApiDocument {
  return buildOpenApiDocument() as unknown as OpenApiDocument;
}
