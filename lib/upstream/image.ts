import { createHash } from "node:crypto";
import { parseSkippingString, plainStringSpan, topLevelNumbers } from "./lean-json";

/** The image of a GPU server's answer (a /generate answer or a `complete` event's data), as bytes. */
export interface AnswerImage {
  bytes: Buffer<ArrayBuffer>;
  contentType: string;
  sha256: string;
  /** The seed's digits, as the server wrote them (past 2^53 too). */
  seed: string | undefined;
  /** The answer's other fields (its image_base64 emptied). */
  fields: Record<string, unknown>;
}

/** Decodes the data URI of `image_base64` (bare base64 too, its type then told by its first bytes). */
export function answerImage(json: Buffer): AnswerImage {
  const fields = parseSkippingString(json, "image_base64").value as Record<string, unknown>;
  const { type, base64 } = answerDataUri(json);
  const bytes = Buffer.from(base64.toString("latin1"), "base64");
  const format = formatOf(bytes);
  return {
    bytes,
    contentType: type ?? (format ? CONTENT_TYPES[format] : "application/octet-stream"),
    sha256: createHash("sha256").update(bytes).digest("hex"),
    seed: topLevelNumbers(json).get("seed"),
    fields,
  };
}

/** The formats OpenAI's `output_format` names, which the gateway can make of any image the GPU server sends. */
export type OutputFormat = "png" | "jpeg" | "webp";

const CONTENT_TYPES: Record<OutputFormat, string> = { png: "image/png", jpeg: "image/jpeg", webp: "image/webp" };

/** An image's format by its first bytes, which say it whatever its data URI claims. */
function formatOf(bytes: Buffer): OutputFormat | undefined {
  if (bytes.length >= 4 && bytes.readUInt32BE(0) === 0x89504e47) return "png";
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "jpeg";
  if (bytes.length >= 12 && bytes.toString("latin1", 0, 4) === "RIFF" && bytes.toString("latin1", 8, 12) === "WEBP") return "webp";
  return undefined;
}

/**
 * The format of an answer's image (a /generate answer or a `complete` event's
 * data) from its first 12 bytes: the megabytes of base64 stay undecoded.
 */
export function answerFormat(json: Buffer): OutputFormat | undefined {
  return formatOf(Buffer.from(answerDataUri(json).base64.toString("latin1", 0, 16), "base64"));
}

/**
 * The one reading of `image_base64`: the data URI's media type (none for bare base64), and
 * its base64 as the GPU server wrote it, a view of the answer never decoded and encoded again.
 */
export function answerDataUri(json: Buffer): { type: string | undefined; base64: Buffer } {
  const span = plainStringSpan(json, "image_base64");
  // A string with escapes in it (no GPU server writes one): decoded, then its base64 again.
  const text = span ? json.subarray(span[0], span[1]) : Buffer.from(String((JSON.parse(json.toString("utf8")) as { image_base64?: unknown }).image_base64));
  const comma = text.toString("latin1", 0, 5) === "data:" ? text.indexOf(",") : -1;
  if (comma < 0) return { type: undefined, base64: text };
  return { type: /^data:([\w.+-]+\/[\w.+-]+)/.exec(text.toString("latin1", 0, comma))?.[1], base64: text.subarray(comma + 1) };
}

/**
 * The image in `format`, re-encoded by sharp (libvips, on libuv's thread pool:
 * the event loop goes on meanwhile); `quality` is OpenAI's output_compression
 * for jpeg and webp, 100 unless asked. Its hash is its own, so its URL is too.
 * sharp is loaded on the first conversion: a gateway that never converts does
 * not hold libvips in memory.
 */
export async function convertImage(image: AnswerImage, format: OutputFormat, quality = 100): Promise<AnswerImage> {
  const { default: sharp } = await import("sharp");
  // Each image is seen once: libvips' operation cache would only hold memory.
  sharp.cache(false);
  const pipeline = sharp(image.bytes);
  const encoded = format === "png" ? pipeline.png() : format === "jpeg" ? pipeline.jpeg({ quality }) : pipeline.webp({ quality });
  const bytes = await encoded.toBuffer();
  return { ...image, bytes, contentType: CONTENT_TYPES[format], sha256: createHash("sha256").update(bytes).digest("hex") };
}
