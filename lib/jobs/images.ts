/**
 * Where jobs' images live, by their SHA-256: files under DATA_DIR (the
 * default), or objects in an S3-compatible bucket (IMAGE_STORE=s3: AWS S3,
 * R2, MinIO, …), which every gateway can serve. The job store keeps their
 * records; this keeps their bytes, and reads them as a client takes them.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { open, rename, rm, statfs, writeFile } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import { ReadableStream as WebReadableStream } from "node:stream/web";
import type * as S3 from "@aws-sdk/client-s3";
import type { Config } from "../config";
import { fail } from "../errors";

export interface ImageStore {
  /** Keeps the bytes under their hash, whole or not at all; rejects with the system's or the service's error (ENOSPC for a full disk). */
  put(sha256: string, bytes: Buffer, contentType: string): Promise<void>;
  /** Bytes `start` to `end` (inclusive), read as the consumer pulls, nothing ahead; nothing is fetched until the first read. */
  read(sha256: string, start: number, end: number): ReadableStream<Uint8Array>;
  /** Gone (one already gone is no error). */
  remove(sha256: string): Promise<void>;
  /** Lets go of connections (the store's, at shutdown). */
  close?(): void;
}

/** Throws unless images can be written and removed in the store (an empty probe put and removed): run at start. */
export async function checkWritable(images: ImageStore): Promise<void> {
  const probe = `.writable-${randomBytes(6).toString("hex")}`;
  await images.put(probe, Buffer.alloc(0), "application/octet-stream");
  await images.remove(probe);
}

/** How much is read at a time: what a client that stops reading holds in memory here. */
const CHUNK_BYTES = 64 * 1024;

/** `<dir>/<sha256>`, written whole off the event loop and renamed, so a reader or a crash never sees half an image. */
export class FileImageStore implements ImageStore {
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  async put(sha256: string, bytes: Buffer): Promise<void> {
    const file = path.join(this.dir, sha256);
    const partial = `${file}.${randomBytes(6).toString("hex")}.partial`;
    try {
      await writeFile(partial, bytes);
      await rename(partial, file);
    } catch (error) {
      await rm(partial, { force: true });
      throw error;
    }
  }

  read(sha256: string, start: number, end: number): ReadableStream<Uint8Array> {
    return fileStream(path.join(this.dir, sha256), start, end);
  }

  async remove(sha256: string): Promise<void> {
    await rm(path.join(this.dir, sha256), { force: true });
  }
}

/** A file's bytes `start` to `end`, opened at the first read and closed at the end, on cancel and on error. */
export function fileStream(file: string, start: number, end: number): ReadableStream<Uint8Array> {
  return pulled(fileChunks(file, start, end));
}

async function* fileChunks(file: string, start: number, end: number): AsyncGenerator<Uint8Array> {
  let handle: FileHandle | undefined;
  try {
    for (let position = start; position <= end; ) {
      handle ??= await open(file, "r");
      const length = Math.min(CHUNK_BYTES, end + 1 - position);
      const { bytesRead, buffer } = await handle.read(Buffer.allocUnsafe(length), 0, length, position);
      if (bytesRead === 0) throw new Error(`the file ended at byte ${position}, before its ${end + 1}`);
      position += bytesRead;
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/** The chunks as the consumer pulls them, nothing read ahead (from()'s highWaterMark is 0); a cancel runs the generator's finally. */
function pulled(chunks: AsyncGenerator<Uint8Array>): ReadableStream<Uint8Array> {
  // Node's global ReadableStream has from(); the DOM type the project compiles with does not.
  return WebReadableStream.from(chunks) as unknown as ReadableStream<Uint8Array>;
}

/** IMAGE_STORE=s3's settings: the bucket, the prefix put before each hash in its key, the endpoint of a service not AWS (MinIO, R2, …). */
type S3Settings = Omit<Extract<Config["imageStore"], { kind: "s3" }>, "kind">;

/**
 * `<prefix><sha256>` objects in a bucket, through the AWS SDK; credentials
 * and region from the standard AWS variables (and the SDK's own chain).
 */
export class S3ImageStore implements ImageStore {
  // The SDK is loaded by the first S3 store: a gateway that keeps images on disk never holds it (5 MB).
  private readonly s3: Promise<{ sdk: typeof S3; client: S3.S3Client }>;

  constructor(private readonly settings: S3Settings) {
    this.s3 = import("@aws-sdk/client-s3").then((sdk) => ({
      sdk,
      client: new sdk.S3Client({
        ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
        forcePathStyle: settings.forcePathStyle,
        // A service of one's own has no region to speak of; AWS needs one (AWS_REGION).
        region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (settings.endpoint === undefined ? undefined : "us-east-1"),
        maxAttempts: 2,
      }),
    }));
  }

  private object(sha256: string): { Bucket: string; Key: string } {
    return { Bucket: this.settings.bucket, Key: `${this.settings.prefix}${sha256}` };
  }

  async put(sha256: string, bytes: Buffer, contentType: string): Promise<void> {
    const { sdk, client } = await this.s3;
    await client.send(new sdk.PutObjectCommand({ ...this.object(sha256), Body: bytes, ContentType: contentType, ContentLength: bytes.length }));
  }

  read(sha256: string, start: number, end: number): ReadableStream<Uint8Array> {
    return pulled(this.chunks(sha256, start, end));
  }

  private async *chunks(sha256: string, start: number, end: number): AsyncGenerator<Uint8Array> {
    const { sdk, client } = await this.s3;
    const { Body } = await client.send(new sdk.GetObjectCommand({ ...this.object(sha256), Range: `bytes=${start}-${end}` }));
    if (!Body) throw new Error(`no body for ${this.object(sha256).Key}`);
    yield* Body.transformToWebStream() as unknown as AsyncIterable<Uint8Array>;
  }

  async remove(sha256: string): Promise<void> {
    const { sdk, client } = await this.s3;
    await client.send(new sdk.DeleteObjectCommand(this.object(sha256)));
  }

  close(): void {
    void this.s3.then(({ client }) => {
      client.destroy();
    });
  }
}

/** Free bytes a full disk must have again before new jobs are taken: room for an image or two. */
const MIN_FREE_BYTES = 4 * 1024 * 1024;
const SPACE_CHECK_MS = 1000;

/** Whether DATA_DIR's disk has room: after it was found full, no new job until the file system shows room again. */
export class StorageSpace {
  private full = false;
  private checkedAt = 0;

  constructor(private readonly dir: string) {}

  get isFull(): boolean {
    return this.full;
  }

  /** A write's failure as the error table has it: a full disk (ENOSPC, EDQUOT) is storage_full, and stops new jobs. */
  failed(error: unknown): unknown {
    const code = (error as { code?: unknown } | null)?.code;
    if (code !== "ENOSPC" && code !== "EDQUOT") return error;
    this.full = true;
    return fail.storageFull("the disk of DATA_DIR is full", error);
  }

  /** Throws storage_full while a disk found full has no room yet (statfs, at most once a second). */
  async check(): Promise<void> {
    if (!this.full) return;
    if (Date.now() - this.checkedAt >= SPACE_CHECK_MS) {
      this.checkedAt = Date.now();
      const disk = await statfs(this.dir).catch(() => undefined);
      if (disk && disk.bavail * disk.bsize >= MIN_FREE_BYTES) this.full = false;
    }
    if (this.full) throw fail.storageFull("the disk of DATA_DIR is full");
  }
}
