import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fileResponse } from "@/lib/file-response";
import type { StoredFile } from "@/lib/file-response";
import { fileStream } from "@/lib/jobs/images";

/** A file on disk as the image store serves it. */
function stored(filePath: string, bytes: number): StoredFile {
  return { bytes, contentType: "image/jpeg", etag: '"abc123"', read: (start, end) => fileStream(filePath, start, end) };
}

let dir: string;
let file: StoredFile;
let bytes: Buffer;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "file-response-"));
  bytes = randomBytes(300_000);
  const filePath = path.join(dir, "image");
  writeFileSync(filePath, bytes);
  file = stored(filePath, bytes.length);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function get(headers: Record<string, string> = {}, method = "GET"): Request {
  return new Request("http://gateway/api/images/x", { method, headers });
}

async function body(response: Response): Promise<Buffer> {
  return Buffer.from(await response.arrayBuffer());
}

function openFiles(): number {
  return readdirSync("/proc/self/fd").length;
}

describe("fileResponse", () => {
  it("streams the whole file with Content-Length, its type, ETag and Accept-Ranges", async () => {
    const response = fileResponse(get(), file, { "cache-control": "public" });
    expect(response.status).toBe(200);
    expect(Object.fromEntries(response.headers)).toMatchObject({
      "content-length": String(bytes.length),
      "content-type": "image/jpeg",
      etag: '"abc123"',
      "accept-ranges": "bytes",
      "cache-control": "public",
    });
    expect((await body(response)).equals(bytes)).toBe(true);
  });

  it.each([
    ["bytes=0-99", 0, 99],
    ["bytes=100-", 100, 299_999],
    ["bytes=-500", 299_500, 299_999],
    ["bytes=299990-400000", 299_990, 299_999],
    ["bytes=-999999", 0, 299_999],
    // The unit is case-insensitive (RFC 9110 §14.1), as nginx reads it.
    ["Bytes=5-9", 5, 9],
  ])("answers %s with 206 and exactly that part", async (range, start, end) => {
    const response = fileResponse(get({ range }), file);
    expect(response.status).toBe(206);
    expect(response.headers.get("content-range")).toBe(`bytes ${start}-${end}/300000`);
    expect(response.headers.get("content-length")).toBe(String(end - start + 1));
    expect((await body(response)).equals(bytes.subarray(start, end + 1))).toBe(true);
  });

  it.each(["bytes=300000-", "bytes=-0", "bytes=999999-1000000"])("answers the unsatisfiable %s with 416 and bytes */size, opening nothing", async (range) => {
    const response = fileResponse(get({ range }), stored(path.join(dir, "absent"), bytes.length));
    expect(response.status).toBe(416);
    expect(response.headers.get("content-range")).toBe("bytes */300000");
    expect(await response.text()).toBe("");
  });

  it.each(["items=0-5", "bytes=0-1,5-6", "bytes=abc", "bytes=5-3", "bytes=-"])("ignores the Range %s: the whole file", async (range) => {
    const response = fileResponse(get({ range }), file);
    expect(response.status).toBe(200);
    expect((await body(response)).length).toBe(bytes.length);
  });

  it.each(['"abc123"', 'W/"abc123"', '"other", "abc123"', "*"])("answers If-None-Match: %s with 304, no body, opening nothing", async (tag) => {
    const response = fileResponse(get({ "if-none-match": tag }), stored(path.join(dir, "absent"), bytes.length));
    expect(response.status).toBe(304);
    expect(response.headers.get("etag")).toBe('"abc123"');
    expect(await response.text()).toBe("");
  });

  it("takes a Range under If-Range only when it names the ETag", () => {
    expect(fileResponse(get({ range: "bytes=0-9", "if-range": '"abc123"' }), file).status).toBe(206);
    expect(fileResponse(get({ range: "bytes=0-9", "if-range": '"changed"' }), file).status).toBe(200);
    expect(fileResponse(get({ range: "bytes=0-9", "if-range": "Wed, 21 Oct 2015 07:28:00 GMT" }), file).status).toBe(200);
  });

  it("answers HEAD from what is known, never opening the file", () => {
    const response = fileResponse(get({}, "HEAD"), stored(path.join(dir, "absent"), bytes.length));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-length")).toBe("300000");
    expect(response.body).toBeNull();
    const part = fileResponse(get({ range: "bytes=10-19" }, "HEAD"), stored(path.join(dir, "absent"), bytes.length));
    expect([part.status, part.headers.get("content-length")]).toEqual([206, "10"]);
  });

  it("errors the body with ENOENT for a file gone since its metadata", async () => {
    await expect(body(fileResponse(get(), stored(path.join(dir, "absent"), bytes.length)))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("reads no further ahead than the chunk the client takes: a client that stops reading holds one chunk", async () => {
    const bigPath = path.join(dir, "big");
    const big = stored(bigPath, 4 * 1024 * 1024);
    writeFileSync(bigPath, Buffer.alloc(big.bytes, 0x11));
    const reader = fileResponse(get(), big).body?.getReader();
    const first = await reader?.read();
    const taken = first?.value?.length ?? 0;
    expect(taken).toBeGreaterThan(0);
    expect(taken).toBeLessThanOrEqual(64 * 1024);
    await new Promise((resolve) => setTimeout(resolve, 50));
    // What follows the first chunk is written over now: a stream that had read ahead would send the old bytes.
    const handle = await open(bigPath, "r+");
    await handle.write(Buffer.alloc(big.bytes - taken, 0xaa), 0, big.bytes - taken, taken);
    await handle.close();
    let rest = 0;
    for (;;) {
      const { done, value } = (await reader?.read()) ?? { done: true, value: undefined };
      if (done) break;
      expect(value.every((byte) => byte === 0xaa)).toBe(true);
      rest += value.length;
    }
    expect(taken + rest).toBe(big.bytes);
  });

  it("opens the file at the first read, and closes it when the client cancels, and when it has read it all", async () => {
    const before = openFiles();
    const canceled = fileResponse(get(), file);
    expect(openFiles(), "nothing open for a body not read yet").toBe(before);
    const reader = canceled.body?.getReader();
    await reader?.read();
    expect(openFiles()).toBe(before + 1);
    await reader?.cancel();
    expect(openFiles()).toBe(before);
    await body(fileResponse(get(), file));
    expect(openFiles()).toBe(before);
  });
});
