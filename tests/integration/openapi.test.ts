import { afterAll, describe, expect } from "vitest";
import { z } from "zod";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { parseConfig } from "@/lib/config";
import { GenerateResponse, StreamEvent } from "@/lib/schemas";
import { ErrorBody, Job, OpenAIErrorBody, OpenAIImageStreamEvent, OpenAIImagesResponse, ValidationErrorBody } from "@/lib/api-shapes";
import { readDocument } from "../openapi-document";
import type { Method, Operation } from "../openapi-document";
import { it } from "./fixtures";
import { call, readEvents } from "./harness";
import type { Gateway } from "./harness";

const document = readDocument();
const defaults = parseConfig({});

let emulator: Emulator;
let gateway: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  emulator = await startEmulator({ stepMs: 1 });
  // The limits the document's examples show.
  gateway = await startFileGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, MAX_BODY_BYTES: String(defaults.maxBodyBytes) });
});

afterAll(() => emulator.close());

function operations(): { path: string; method: Method; operation: Operation }[] {
  return Object.entries(document.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, operation]) => ({ path, method: method as Method, operation })),
  );
}

/** The `detail` an operation documents under `status` for the example named `key`. */
function documentedDetail(operation: Operation, status: number | string, key: string): unknown {
  const example = operation.responses[String(status)]?.content?.["application/json"]?.examples?.[key];
  if (!example) throw new Error(`${operation.operationId} documents no ${status} example ${key}`);
  const value = example.value as { detail?: unknown; error?: unknown };
  return value.error ?? value.detail;
}

/** An error answer: the documented detail, and no field the document does not name. */
async function expectDocumentedError(response: Response, operation: Operation, key: string, label: string): Promise<void> {
  const body = (await response.json()) as { detail?: unknown; error?: unknown };
  // The /v1 routes answer in OpenAI's shape.
  const schema = body.error !== undefined ? OpenAIErrorBody : response.status === 422 ? ValidationErrorBody : ErrorBody;
  expect(() => z.strictObject(schema.shape).parse(body), label).not.toThrow();
  expect(body.error ?? body.detail, label).toEqual(documentedDetail(operation, response.status, key));
}

function post(url: string, body: string, contentType = "application/json"): Promise<Response> {
  return fetch(url, { method: "POST", headers: { "content-type": contentType }, body });
}

describe("GET /api/openapi.json", () => {
  it("serves the document buildOpenApiDocument() makes", async () => {
    const answer = await call(`${gateway.url}/api/openapi.json`);
    expect(answer.status).toBe(200);
    expect(answer.headers.get("content-type")).toMatch(/^application\/json/);
    expect(answer.body).toEqual(document);
  });

  it("answers another method with 405 JSON and Allow, as every route does", async () => {
    const answer = await call(`${gateway.url}/api/openapi.json`, { method: "POST" });
    expect(answer).toMatchObject({ status: 405, body: { detail: "Method POST not allowed; use GET or HEAD" } });
    expect(answer.headers.get("allow")).toBe("GET, HEAD");
  });
});

describe("the document's request examples, sent to the running gateway", () => {
  const cases = operations().flatMap(({ path, operation }) =>
    Object.entries(operation.requestBody?.content["application/json"]?.examples ?? {}).map(([key, example]) => ({
      name: `${operation.operationId} ${key}`,
      path,
      operation,
      key,
      example,
    })),
  );

  it("cover both generate endpoints at both paths", () => {
    const paths = new Set(cases.map(({ path }) => path));
    expect([...paths].sort()).toEqual(["/api/generate", "/api/generate-stream", "/api/jobs", "/generate", "/generate-stream", "/v1/images/generations"]);
  });

  it.each(cases)("$name answers the status it documents", async ({ name, path, operation, key, example }) => {
    const expected = example["x-expected-status"];
    const response = await post(`${gateway.url}${path}`, JSON.stringify(example.value));
    expect(response.status, name).toBe(expected);
    if ((expected ?? 200) >= 400) {
      await expectDocumentedError(response, operation, key, name);
    } else if (path.endsWith("-stream")) {
      expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
      const events = (await readEvents(response, performance.now())).flatMap(({ data }) => (data ? [StreamEvent.parse(data)] : []));
      expect(events.at(-1)?.type, name).toBe("complete");
    } else if (path === "/api/jobs") {
      Job.parse(await response.json());
    } else if (path.startsWith("/v1/") && (example.value as { stream?: boolean }).stream) {
      expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
      const events = (await readEvents(response, performance.now())).flatMap(({ data }) => (data ? [OpenAIImageStreamEvent.parse(data)] : []));
      expect(events.map(({ type }) => type), name).toEqual(["image_generation.completed"]);
    } else if (path.startsWith("/v1/")) {
      OpenAIImagesResponse.parse(await response.json());
    } else {
      GenerateResponse.parse(await response.json());
    }
  });
});

describe("the document's error examples", () => {
  it("are what the gateway answers a wrong method with, on every operation", async () => {
    for (const { path, method, operation } of operations()) {
      const served = Object.keys(document.paths[path] ?? {}).map((name) => name.toUpperCase());
      const allow = served.includes("GET") ? ["GET", "HEAD", ...served.filter((name) => name !== "GET")] : served;
      const other = ["POST", "GET", "DELETE"].find((candidate) => !allow.includes(candidate)) ?? "DELETE";
      const response = await fetch(`${gateway.url}${path}`, { method: other });
      expect(response.status, `${other} ${path} (${method})`).toBe(405);
      expect(response.headers.get("allow"), `${other} ${path}`).toBe(allow.join(", "));
      await expectDocumentedError(response, operation, "methodNotAllowed", `${other} ${path}`);
    }
  });

  it("are what the gateway answers bodies it cannot read with (400, 413, 415)", async () => {
    const tooLarge = JSON.stringify({ prompt: "x".repeat(defaults.maxBodyBytes) });
    const cases: [status: number, key: string, send: (url: string) => Promise<Response>][] = [
      [400, "notJson", (url) => post(url, '{"prompt": "a red fox"')],
      [400, "empty", (url) => post(url, "")],
      [413, "tooLarge", (url) => post(url, tooLarge)],
      [415, "textPlain", (url) => post(url, "a red fox", "text/plain")],
    ];
    for (const { path, method, operation } of operations()) {
      // Every POST that reads a body (a cancel reads none).
      if (method !== "post" || !operation.requestBody) continue;
      for (const [status, key, send] of cases) {
        const response = await send(`${gateway.url}${path}`);
        // OpenAI's API has no 413 or 415: the /v1 routes answer 400.
        expect(response.status, `${key} ${path}`).toBe(path.startsWith("/v1/") ? 400 : status);
        await expectDocumentedError(response, operation, key, `${key} ${path}`);
      }
    }
  });
});

describe("/docs", () => {
  it("answers 200 HTML that loads nothing from another host", async () => {
    const response = await fetch(`${gateway.url}/docs`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/html/);
    const html = await response.text();
    expect(html).toContain("<title>API reference · Text-to-Image Gateway</title>");
    expect(html).not.toMatch(/(?:src|href)="(?:https?:)?\/\//);
  });
});
