/**
 * A stored file's answer, as a static file server (nginx, `send`) gives it:
 * streamed from its store as the client takes it (one chunk in memory per
 * client, not the file), with Content-Length, ETag and conditional requests,
 * and a single `Range` (206, or 416). HEAD, 304 and 416 read nothing.
 */
import "server-only";
import { CONTENT_LENGTH_HEADER } from "./security/node-guard.mjs";

/** What is known of the file without reading it, and how to read it. */
export interface StoredFile {
  bytes: number;
  contentType: string;
  /** Quoted, as sent in ETag. */
  etag: string;
  /** Bytes `start` to `end` (inclusive), read as the consumer pulls: nothing is fetched before the first read. */
  read(start: number, end: number): ReadableStream<Uint8Array>;
}

/**
 * The answer to GET or HEAD of `file`, `headers` added to it (Cache-Control,
 * say). A file gone since its metadata was read errors the body.
 */
export function fileResponse(request: Request, file: StoredFile, headers: Record<string, string> = {}): Response {
  const base = { ...headers, "content-type": file.contentType, etag: file.etag, "accept-ranges": "bytes" };
  if (matchesAny(request.headers.get("if-none-match"), file.etag)) return new Response(null, { status: 304, headers: base });
  const ifRange = request.headers.get("if-range");
  // If-Range with a date is never taken as a match: an image's ETag is the only validator it has.
  const part = ifRange === null || ifRange === file.etag ? partOf(request.headers.get("range"), file.bytes) : "whole";
  if (part === "unsatisfiable") {
    return new Response(null, { status: 416, headers: { ...base, "content-range": `bytes */${file.bytes}` } });
  }
  const { start, end } = part === "whole" ? { start: 0, end: file.bytes - 1 } : part;
  const length = String(end - start + 1);
  const sized: Record<string, string> = { ...base, "content-length": length, [CONTENT_LENGTH_HEADER]: length };
  if (part !== "whole") sized["content-range"] = `bytes ${start}-${end}/${file.bytes}`;
  return new Response(request.method === "HEAD" ? null : file.read(start, end), { status: part === "whole" ? 200 : 206, headers: sized });
}

/** If-None-Match: `*`, or a list of entity tags compared weakly (RFC 9110 §13.1.2). */
function matchesAny(header: string | null, etag: string): boolean {
  if (header === null) return false;
  const opaque = (tag: string) => tag.trim().replace(/^W\//, "");
  return header.split(",").some((tag) => tag.trim() === "*" || opaque(tag) === opaque(etag));
}

/**
 * A `Range` of one part of `size` bytes (RFC 9110 §14): `bytes=a-b`, `a-` or
 * `-n`. A header that is not one such range (another unit, bad syntax,
 * several parts) is ignored: the whole file, as the RFC allows.
 */
function partOf(header: string | null, size: number): { start: number; end: number } | "whole" | "unsatisfiable" {
  const range = /^bytes=(\d*)-(\d*)$/i.exec(header?.trim() ?? "");
  if (!range) return "whole";
  const [, first = "", last = ""] = range;
  if (first === "" && last === "") return "whole";
  if (first === "") {
    const suffix = Number(last);
    return suffix === 0 || size === 0 ? "unsatisfiable" : { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  if (last !== "" && Number(last) < start) return "whole";
  if (start >= size) return "unsatisfiable";
  return { start, end: last === "" ? size - 1 : Math.min(Number(last), size - 1) };
}
