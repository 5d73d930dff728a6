/** A request's JSON object, read as FastAPI reads it: a number keeps its text (lib/pydantic.ts). No HTTP here: jobs and the OpenAI door read their kept inputs with it. */
import { fail } from "./errors";
import { JsonNumber } from "./pydantic";
import { topLevelNumbers } from "./upstream/lean-json";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A JSON object from its bytes, its top-level numbers as JsonNumbers (see readJsonObject); 400 for anything else. */
export function parseJsonObject(bytes: Uint8Array): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch (error) {
    throw fail.invalidJson(bytes.length === 0 ? "the body is empty" : error instanceof Error ? error.message : "bad encoding");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw fail.invalidBody();
  const object = value as Record<string, unknown>;
  for (const [key, source] of topLevelNumbers(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))) {
    const number = object[key];
    if (typeof number === "number") object[key] = new JsonNumber(number, source);
  }
  return object;
}

