import "server-only";
import { errorResponse, fail } from "./errors";

type Handler = (request: Request) => Response | Promise<Response>;
type Method = "GET" | "POST";

/**
 * A route's exports: the given handlers behind the error table, 405 with
 * `Allow` for every other method (Next would answer those with an empty body).
 */
export function route(handlers: Partial<Record<Method, Handler>>) {
  const allow = handlers.GET ? ["GET", "HEAD", ...Object.keys(handlers).filter((m) => m !== "GET")] : Object.keys(handlers);
  const notAllowed: Handler = (request) => errorResponse(fail.methodNotAllowed(request.method, allow));
  const guard =
    (handler: Handler | undefined): Handler =>
    async (request) => {
      if (!handler) return notAllowed(request);
      try {
        return await handler(request);
      } catch (error) {
        return errorResponse(error);
      }
    };
  const get = guard(handlers.GET);
  return {
    GET: get,
    HEAD: handlers.GET ? withoutBody(get) : notAllowed,
    POST: guard(handlers.POST),
    PUT: notAllowed,
    PATCH: notAllowed,
    DELETE: notAllowed,
    OPTIONS: () => new Response(null, { status: 204, headers: { Allow: [...allow, "OPTIONS"].join(", ") } }),
  };
}

function withoutBody(handler: Handler): Handler {
  return async (request) => {
    const response = await handler(request);
    await response.body?.cancel();
    return new Response(null, { status: response.status, headers: response.headers });
  };
}

/** A response whose body is streamed: Vercel refuses unstreamed bodies over 4.5 MB. */
export function streamedJson(bytes: Uint8Array, status = 200): Response {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
  return new Response(body, { status, headers: { "content-type": "application/json" } });
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads a JSON object body: 415 for another content type (none at all is taken
 * as JSON, as FastAPI does), 413 once more than `maxBytes` arrive (counted while
 * reading: Content-Length may be absent or wrong), 400 when it is not a JSON object.
 */
export async function readJsonObject(request: Request, maxBytes: number): Promise<Record<string, unknown>> {
  const contentType = request.headers.get("content-type");
  if (contentType !== null && !isJsonType(contentType)) throw fail.unsupportedMediaType(contentType);
  if (Number(request.headers.get("content-length")) > maxBytes) throw fail.payloadTooLarge(maxBytes);

  const bytes = await readCapped(request, maxBytes);
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch (error) {
    throw fail.invalidJson(bytes.length === 0 ? "the body is empty" : error instanceof Error ? error.message : "bad encoding");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw fail.invalidBody();
  return value as Record<string, unknown>;
}

function isJsonType(contentType: string): boolean {
  const mediaType = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  return mediaType === "application/json" || (mediaType.startsWith("application/") && mediaType.endsWith("+json"));
}

async function readCapped(request: Request, maxBytes: number): Promise<Uint8Array> {
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.byteLength;
    if (length > maxBytes) {
      await reader.cancel();
      throw fail.payloadTooLarge(maxBytes);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, length);
}
