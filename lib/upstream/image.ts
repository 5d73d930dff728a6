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
  const span = plainStringSpan(json, "image_base64");
  const uri = span ? json.toString("latin1", span[0], span[1]) : String((JSON.parse(json.toString("utf8")) as Record<string, unknown>).image_base64);
  const { type, base64 } = /^data:(?<type>[\w.+-]+\/[\w.+-]+)(?:;[^,]*)?;base64,(?<base64>.*)$/s.exec(uri)?.groups ?? { type: "", base64: uri };
  const bytes = Buffer.from(base64 ?? "", "base64");
  return {
    bytes,
    contentType: type || sniffedType(bytes),
    sha256: createHash("sha256").update(bytes).digest("hex"),
    seed: new Map(topLevelNumbers(json)).get("seed"),
    fields,
  };
}

function sniffedType(image: Buffer): string {
  if (image.subarray(0, 4).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47]))) return "image/png";
  return image[0] === 0xff && image[1] === 0xd8 ? "image/jpeg" : "application/octet-stream";
}
