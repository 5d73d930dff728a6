import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { request as undiciRequest } from "undici";

export const dynamic = "force-dynamic";

const upstream = `${process.env.TEXT2IMAGE_SERVER_URL ?? "http://127.0.0.1:8001"}/generate`;

/**
 * POST /api/generate: the body to the GPU server and its answer streamed back
 * as it comes. No validation, no limiter, no parsing: the floor for a Next.js
 * route that relays a large body.
 */
export async function POST(request: Request): Promise<Response> {
  const body = Buffer.from(await request.arrayBuffer());
  const answer = await undiciRequest(upstream, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
    signal: request.signal,
  });
  const stream = Readable.toWeb(answer.body) as WebReadableStream<Uint8Array> as ReadableStream<Uint8Array>;
  return new Response(stream, {
    status: answer.statusCode,
    headers: { "content-type": "application/json" },
  });
}
