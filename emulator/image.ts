import { createHash } from "node:crypto";
import { crc32, deflateSync } from "node:zlib";
import { encodeJpeg } from "./jpeg";

export type ImageMode = "pattern" | "noise";
/** The genuine server's `storage.image_format`: JPEG unless configured otherwise. */
export type ImageFormat = "jpeg" | "png";

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const CACHE_SIZE = 16;

function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, "latin1");
  data.copy(out, 8);
  // The CRC covers the type and the data, not the length.
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** Encodes 8-bit RGB pixels (h * 3w bytes, rows top to bottom). */
export function encodePng(width: number, height: number, rgb: Uint8Array): Buffer {
  const stride = 3 * width;
  const scanlines = Buffer.alloc(height * (1 + stride)); // filter byte 0 (None) before each row
  for (let y = 0; y < height; y++) scanlines.set(rgb.subarray(y * stride, (y + 1) * stride), y * (1 + stride) + 1);
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // colour type RGB; compression, filter and interlace stay 0
  return Buffer.concat([
    SIGNATURE,
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(scanlines)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** mulberry32: a tiny deterministic PRNG, good enough for visual noise. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/**
 * A diagonal gradient between two colours, darker diagonal bands and a disc, all derived
 * from a hash of (prompt, seed). "noise" replaces one pixel in five with a random colour so
 * the PNG compresses about as badly as a photo: a 1024x1024 one is ~1.1 MB (~1.45 MB as base64).
 */
function pixels(prompt: string, seed: string, width: number, height: number, mode: ImageMode): Buffer {
  const hash = createHash("sha256").update(`${seed}\0${prompt}`).digest();
  const byte = (i: number) => hash[i] ?? 0;
  const from = [byte(0), byte(1), byte(2)];
  // Offset each channel by at least 96 so the two ends of the gradient always differ.
  const to = from.map((c, i) => (c + 96 + (byte(3 + i) % 64)) % 256);
  const disc = [byte(6), byte(7), byte(8)];
  const band = 16 + (byte(9) % 48);
  const cx = (byte(10) / 255) * width;
  const cy = (byte(11) / 255) * height;
  const radius2 = ((0.15 + (byte(12) / 255) * 0.25) * Math.min(width, height)) ** 2;
  const noise = mode === "noise" ? prng(hash.readUInt32BE(16)) : null;

  const stride = 3 * width;
  const out = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const t = (x / width + y / height) / 2;
      const inDisc = (x - cx) ** 2 + (y - cy) ** 2 < radius2;
      const shade = Math.floor((x + y) / band) % 2 === 0 ? 1 : 0.8;
      const bits = noise ? noise() : 1;
      const at = y * stride + 3 * x;
      for (let c = 0; c < 3; c++) {
        const base = inDisc ? (disc[c] ?? 0) : ((from[c] ?? 0) * (1 - t) + (to[c] ?? 0) * t) * shade;
        out[at + c] = bits % 5 === 0 ? bits >>> (8 * c + 2) : base;
      }
    }
  }
  return out;
}

const cache = new Map<string, string>();

/**
 * The image for (prompt, seed, size, mode) as a data URI, JPEG (quality 90,
 * the genuine server's default) or PNG; the last 16 are cached.
 */
export function imageDataUri(prompt: string, seed: string, width: number, height: number, mode: ImageMode, format: ImageFormat = "jpeg"): string {
  const key = `${format} ${mode} ${width}x${height} ${seed} ${prompt}`;
  const hit = cache.get(key);
  if (hit !== undefined) {
    cache.delete(key); // re-insert so the Map's order is least recently used first
    cache.set(key, hit);
    return hit;
  }
  const rgb = pixels(prompt, seed, width, height, mode);
  const uri =
    format === "jpeg"
      ? `data:image/jpeg;base64,${encodeJpeg(width, height, rgb).toString("base64")}`
      : `data:image/png;base64,${encodePng(width, height, rgb).toString("base64")}`;
  cache.set(key, uri);
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value ?? key);
  return uri;
}
