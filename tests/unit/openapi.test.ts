import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { Validator } from "@seriousme/openapi-schema-validator";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { parseConfig } from "@/lib/config";
import { fail } from "@/lib/errors";
import { aliasOperationId, buildOpenApiDocument } from "@/lib/openapi";
import { aliasFolders } from "../alias-folders";
import { readDocument } from "../openapi-document";
import type { JsonSchema, Method, OpenApiDocument, Operation } from "../openapi-document";
import * as apiShapes from "@/lib/api-shapes";
import * as requestShapes from "@/lib/schemas";

const document = readDocument();
/**
 * Every route the app serves under /api, read from the app itself: each
 * route.ts under app/api and app/v1 (the catch-all 404s, [...path], aside) with the methods its route()
 * call gives handlers for. A new route without its OpenAPI entry fails here.
 * The original gateway's paths are the folders under app/ that re-export an /api route.
 */
function apiEndpoints(): [string, Method][] {
  return ["api", "v1"].flatMap((root) => {
    const dir = path.join(import.meta.dirname, "../../app", root);
    return readdirSync(dir, { recursive: true, encoding: "utf8" })
      .filter((file) => path.basename(file) === "route.ts" && !file.includes("[...path]"))
      .flatMap((file) => {
        const folder = path.dirname(file);
        const source = readFileSync(path.join(dir, file), "utf8");
        const handlers = source.slice(source.indexOf("route(ROUTES."));
        const methods = [...new Set([...handlers.matchAll(/\b(GET|POST)\s*:/g)].map((match) => (match[1] as string).toLowerCase() as Method))];
        // Next's [segment] and [...segments] are OpenAPI's {segment}.
        const route = folder === "." ? `/${root}` : `/${root}/${folder.split(path.sep).join("/")}`.replace(/\[(?:\.\.\.)?(\w+)\]/g, "{$1}");
        return methods.map((method): [string, Method] => [route, method]);
      });
  });
}
const API_ENDPOINTS = apiEndpoints();
const ALIASES = aliasFolders();
const ALIAS_ENDPOINTS: [string, Method][] = ALIASES.flatMap(({ source, destination }) =>
  API_ENDPOINTS.filter(([path]) => path === destination).map(([, method]): [string, Method] => [source, method]),
);
const GENERATE_ERRORS = ["400", "401", "403", "405", "413", "415", "422", "429", "500", "502", "503", "504"];

function operations(doc: OpenApiDocument = document): [string, Method, Operation][] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, operation]): [string, Method, Operation] => [path, method as Method, operation]),
  );
}

function operation(path: string, method: Method): Operation {
  const found = document.paths[path]?.[method];
  if (!found) throw new Error(`no ${method} ${path}`);
  return found;
}

/** Every named zod schema: the requests and upstream answers (lib/schemas.ts), the gateway's answers (lib/api-shapes.ts). */
const schemas = { ...requestShapes, ...apiShapes };

/** The zod schema a `$ref` names. */
function zodSchemaOf(schema: JsonSchema | undefined): z.ZodType | undefined {
  const name = typeof schema?.$ref === "string" ? schema.$ref.replace("#/components/schemas/", "") : "";
  const value: unknown = (schemas as Record<string, unknown>)[name];
  return value instanceof z.ZodType ? value : undefined;
}

function without(value: object, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(value).filter(([key]) => !keys.includes(key)));
}

describe("the OpenAPI document", () => {
  it("validates against the OpenAPI 3.1 schema, every $ref resolving", async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(document) as unknown as Record<string, unknown>);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
  });

  it("documents every endpoint under /api and at the original gateway's paths, and nothing else", () => {
    expect(API_ENDPOINTS.length).toBeGreaterThanOrEqual(7);
    const documented = operations().map(([path, method]) => `${method} ${path}`);
    expect(documented.sort()).toEqual([...API_ENDPOINTS, ...ALIAS_ENDPOINTS].map(([path, method]) => `${method} ${path}`).sort());
  });

  it("gives each original gateway path (a folder re-exporting an /api route) the operation of that path, under its own operationId", () => {
    expect(ALIASES.length).toBeGreaterThanOrEqual(4);
    expect(ALIAS_ENDPOINTS.length).toBe(ALIASES.length);
    for (const { source, destination } of ALIASES) {
      const alias = document.paths[source];
      const api = document.paths[destination];
      expect(Object.keys(alias ?? {}), source).toEqual(Object.keys(api ?? {}));
      for (const method of Object.keys(api ?? {}) as Method[]) {
        const [aliasOperation, apiOperation] = [alias?.[method], api?.[method]] as [Operation, Operation];
        const own = ["operationId", "tags", "description"];
        expect(without(aliasOperation, own), source).toEqual(without(apiOperation, own));
        expect(aliasOperation.operationId).toBe(aliasOperationId(apiOperation.operationId));
      }
    }
    const ids = operations().map(([, , { operationId }]) => operationId);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("describes the generate body with zod's JSON Schema of GenerateRequest (as read: defaults optional)", () => {
    const component = document.components.schemas.GenerateRequest as {
      required: string[];
      properties: Record<string, JsonSchema>;
    };
    expect(component.required).toEqual(["prompt"]);
    expect(Object.keys(component.properties)).toEqual(Object.keys(schemas.GenerateRequest.shape));
    expect(component.properties.prompt).toMatchObject({ type: "string", minLength: 1, maxLength: schemas.PROMPT_MAX_CHARS });
    for (const side of ["width", "height"]) {
      expect(component.properties[side]).toMatchObject({ type: "integer", minimum: schemas.SIZE_MIN, maximum: schemas.SIZE_MAX, default: 1024 });
    }
    expect(component.properties.num_inference_steps).toMatchObject({ minimum: schemas.STEPS_MIN, maximum: schemas.STEPS_MAX, default: 9 });
    expect(component.properties.seed).toMatchObject({ type: "integer", default: -1 });
    for (const [path, method] of [...API_ENDPOINTS, ...ALIAS_ENDPOINTS]) {
      const body = document.paths[path]?.[method]?.requestBody;
      // Every POST but a cancel takes the generate body; OpenAI's generations, its own; its edits and variations, none (their body is not read).
      const schema = path.startsWith("/v1/") ? "OpenAIImagesRequest" : "GenerateRequest";
      const takesBody = !path.endsWith("/cancel") && !path.endsWith("/edits") && !path.endsWith("/variations");
      if (method === "post" && takesBody) expect(body?.content["application/json"]?.schema, path).toEqual({ $ref: `#/components/schemas/${schema}` });
      else expect(body, path).toBeUndefined();
    }
  });

  it("makes each component of the zod schema that bears its name (lib/schemas.ts, lib/api-shapes.ts), its fields and members all there", () => {
    const names = Object.keys(document.components.schemas);
    expect(names.length).toBeGreaterThan(10);
    for (const name of names) {
      const schema = zodSchemaOf({ $ref: `#/components/schemas/${name}` });
      expect(schema, `${name} is a zod schema of lib/schemas.ts or lib/api-shapes.ts`).toBeDefined();
      if (!schema) continue;
      expect(z.globalRegistry.get(schema)?.id, name).toBe(name);
      const component = document.components.schemas[name] as { properties?: object; oneOf?: unknown[] };
      if (schema instanceof z.ZodObject) expect(Object.keys(component.properties ?? {}), name).toEqual(Object.keys(schema.shape));
      if (schema instanceof z.ZodDiscriminatedUnion) expect(component.oneOf?.length, name).toBe(schema.options.length);
    }
  });

  it("types the event stream with the four event schemas and gives whole streams as examples", () => {
    const union = document.components.schemas.StreamEvent as { oneOf: JsonSchema[] };
    expect(union.oneOf).toEqual(["QueuedEvent", "ProgressEvent", "CompleteEvent", "ErrorEvent"].map((name) => ({ $ref: `#/components/schemas/${name}` })));
    for (const type of ["queued", "progress", "complete", "error"]) {
      const name = `${type[0]?.toUpperCase() ?? ""}${type.slice(1)}Event`;
      expect(document.components.schemas[name], name).toMatchObject({ properties: { type: { const: type } } });
    }
    const stream = operation("/api/generate-stream", "post").responses["200"]?.content?.["text/event-stream"];
    expect(stream?.schema).toMatchObject({ type: "array", items: { properties: { data: { $ref: "#/components/schemas/StreamEvent" } } } });
    const types = Object.values(stream?.examples ?? {}).flatMap(({ value }) =>
      (value as { data: unknown }[]).map(({ data }) => schemas.StreamEvent.parse(data).type),
    );
    expect(new Set(types)).toEqual(new Set(["queued", "progress", "complete", "error"]));
  });

  it("gives every error response a {detail} schema (OpenAI's {error} under /v1), examples of that shape, and the headers it sends", () => {
    for (const [path, method, { responses }] of operations()) {
      for (const [status, response] of Object.entries(responses)) {
        // Successes, and the empty bodies of a 304 and an image's 416 (as a static file server's), are no errors.
        if (status.startsWith("2") || status === "304" || status === "416") continue;
        const media = response.content?.["application/json"];
        const name = path.startsWith("/v1/") ? "OpenAIErrorBody" : status === "422" ? "ValidationErrorBody" : "ErrorBody";
        expect(media?.schema, `${method} ${path} ${status}`).toEqual({ $ref: `#/components/schemas/${name}` });
        const examples = Object.values(media?.examples ?? {});
        expect(examples.length, `${method} ${path} ${status}`).toBeGreaterThan(0);
        const body = schemas[name];
        for (const { value } of examples) body.parse(value);
      }
      expect(responses["405"]?.headers, `${method} ${path}`).toEqual({ Allow: { $ref: "#/components/headers/Allow" } });
    }
    for (const path of ["/api/generate", "/api/generate-stream"]) {
      const { responses } = operation(path, "post");
      expect(Object.keys(responses).filter((status) => status !== "200" && status !== "default")).toEqual(GENERATE_ERRORS);
      expect(responses["503"]?.headers).toEqual({ "Retry-After": { $ref: "#/components/headers/RetryAfter" } });
      expect(responses["401"]?.headers).toEqual({ "WWW-Authenticate": { $ref: "#/components/headers/WWWAuthenticate" } });
      expect(Object.keys(responses["429"]?.headers ?? {})).toEqual(["Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]);
    }
  });

  it("makes the API key optional on the generate, jobs and OpenAI endpoints only, in both ways the gateway reads it", () => {
    for (const [path, method, { security }] of operations()) {
      const generates = path.endsWith("generate") || path.endsWith("generate-stream") || path.startsWith("/api/jobs") || path.startsWith("/v1/");
      expect(security, `${method} ${path}`).toEqual(generates ? [{}, { bearerKey: [] }, { apiKeyHeader: [] }] : undefined);
    }
    expect(document.components.securitySchemes).toMatchObject({
      bearerKey: { type: "http", scheme: "bearer" },
      apiKeyHeader: { type: "apiKey", in: "header", name: "X-API-Key" },
    });
  });

  it("takes its error examples from the error table, with the default limits", () => {
    const defaults = parseConfig({});
    const examples = (status: string) =>
      Object.values(operation("/api/generate", "post").responses[status]?.content?.["application/json"]?.examples ?? {}).map(
        ({ value }) => (value as { detail: unknown }).detail,
      );
    expect(examples("413")).toContain(fail.payloadTooLarge(defaults.maxBodyBytes).detail);
    expect(examples("415")).toContain(fail.unsupportedMediaType("text/plain").detail);
    expect(examples("400")).toContain(fail.invalidBody().detail);
    expect(examples("503")).toEqual(expect.arrayContaining([fail.queueFull().detail, fail.queueTimeout(defaults.queueTimeoutMs).detail]));
    expect(examples("504")).toContain(fail.upstreamTimeout(defaults.requestTimeoutMs, null).detail);
    expect(examples("502")).toContain(fail.upstreamConnection(null).detail);
    expect(examples("405")).toEqual([fail.methodNotAllowed("GET", ["POST"]).detail]);
    expect(examples("401")).toEqual([fail.apiKeyMissing().detail, fail.apiKeyInvalid().detail]);
    expect(examples("403")).toEqual([fail.originNotAllowed().detail]);
    expect(examples("503")).toEqual(expect.arrayContaining([fail.shuttingDown().detail, fail.limiterUnavailable().detail]));
    expect(document.components.headers.WWWAuthenticate?.example).toBe(fail.apiKeyMissing().headers["WWW-Authenticate"]);
    expect(document.components.headers.RetryAfter?.example).toBe(fail.queueFull().headers["Retry-After"]);
  });

  it("has valid and invalid generate examples, each documenting the status and detail the validation gives", () => {
    const { requestBody, responses } = operation("/api/generate", "post");
    const examples = Object.entries(requestBody?.content["application/json"]?.examples ?? {});
    const statuses = examples.map(([, example]) => example["x-expected-status"]);
    expect(statuses.filter((status) => status === 200).length).toBeGreaterThanOrEqual(2);
    expect(statuses).toContain(422);
    expect(statuses).toContain(400);
    for (const [key, { value, "x-expected-status": status }] of examples) {
      const isObject = typeof value === "object" && value !== null && !Array.isArray(value);
      const result = isObject ? schemas.validateGenerateRequest(value) : undefined;
      const documented = (responses[String(status)]?.content?.["application/json"]?.examples?.[key]?.value as { detail: unknown } | undefined)?.detail;
      if (status === 200) expect(result?.ok, key).toBe(true);
      else if (status === 422) expect(result?.ok === false && result.detail, key).toEqual(documented);
      else expect([isObject, documented], key).toEqual([false, fail.invalidBody().detail]);
    }
  });

  it("gives only examples that parse with the zod schema of their response", () => {
    let checked = 0;
    for (const [path, method, { responses }] of operations()) {
      for (const [status, response] of Object.entries(responses)) {
        for (const [type, media] of Object.entries(response.content ?? {})) {
          if (media.schema.type === "string" || (media.schema.type === "object" && !media.schema.properties)) continue; // Prometheus text; this document
          const schema = zodSchemaOf(type === "text/event-stream" ? (media.schema.items as { properties: { data: JsonSchema } }).properties.data : media.schema);
          expect(schema, `${method} ${path} ${status} ${type}`).toBeDefined();
          for (const { value } of Object.values(media.examples ?? {})) {
            const items = type === "text/event-stream" ? (value as { data: unknown }[]).map(({ data }) => data) : [value];
            for (const item of items) schema?.parse(item);
            checked += items.length;
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(50);
  });

  it("is plain JSON, the same on every build", () => {
    expect(JSON.parse(JSON.stringify(document))).toEqual(document);
    expect(buildOpenApiDocument()).toEqual(document);
  });
});
