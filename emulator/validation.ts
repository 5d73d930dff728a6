/**
 * The genuine server's request model, as FastAPI and pydantic 2 apply it to a
 * JSON body, in the emulator's own code: never the gateway's, so a fault in
 * the gateway's validation is not mirrored by the stand-in its tests run
 * against. tests/unit/emulator-validation.test.ts holds it to the genuine
 * server's recorded answers (tests/fixtures/genuine-validation.json).
 *
 * The model: prompt str (1–2000 characters), negative_prompt str ("", at most
 * 2000), height and width int (256–2048, 1024), seed int (≥ −1, −1), steps int
 * (6–12, 9), guidance_scale float (0.0). Lax mode: a bool is a number, a
 * number-like string is read (pydantic-core's str_as_int, Rust's float
 * parse), an integral float is an int.
 */

export interface Issue {
  type: string;
  loc: (string | number)[];
  msg: string;
  input?: unknown;
  ctx?: Record<string, unknown>;
}

export interface EmulatedRequest {
  prompt: string;
  negative_prompt: string;
  height: number;
  width: number;
  /** Exact past 2^53: a Python int. */
  seed: bigint;
  num_inference_steps: number;
  guidance_scale: number;
}

type Read<T> = { value: T } | { issue: Omit<Issue, "loc" | "input"> };

interface Field {
  read: (input: unknown, source: string | undefined) => Read<unknown>;
  fallback?: unknown;
  min?: number | bigint;
  max?: number | bigint;
}

const FIELDS: Record<keyof EmulatedRequest, Field> = {
  prompt: { read: readStr, min: 1, max: 2000 },
  negative_prompt: { read: readStr, fallback: "", max: 2000 },
  height: { read: readInt, fallback: 1024n, min: 256, max: 2048 },
  width: { read: readInt, fallback: 1024n, min: 256, max: 2048 },
  seed: { read: readInt, fallback: -1n, min: -1 },
  num_inference_steps: { read: readInt, fallback: 9n, min: 6, max: 12 },
  guidance_scale: { read: readFloat, fallback: 0 },
};

/** Parses the body, keeping each top-level number's text (Python keeps a 20-digit seed's digits). */
export function parseBody(raw: Buffer): { value: unknown; sources: Map<string, string> } | { issue: Issue } {
  if (raw.length === 0) return { issue: { type: "missing", loc: ["body"], msg: "Field required", input: null } };
  const sources = new Map<string, string>();
  try {
    const value = JSON.parse(raw.toString("utf8"), function (this: unknown, key, field: unknown, context?: { source?: string }) {
      if (typeof field === "number" && context?.source !== undefined) sources.set(key, context.source);
      return field;
    }) as unknown;
    return { value, sources };
  } catch (error) {
    const position = /position (\d+)/.exec(String(error))?.[1];
    return { issue: { type: "json_invalid", loc: ["body", Number(position ?? 0)], msg: "JSON decode error", input: {} } };
  }
}

/** The request as the model reads it, or its 422 entries in the model's field order. */
export function validateBody(body: unknown, sources: Map<string, string>): { ok: true; data: EmulatedRequest } | { ok: false; detail: Issue[] } {
  // FastAPI takes a JSON null as no body at all.
  if (body === null) return { ok: false, detail: [{ type: "missing", loc: ["body"], msg: "Field required", input: null }] };
  if (typeof body !== "object" || Array.isArray(body)) {
    return { ok: false, detail: [{ type: "model_attributes_type", loc: ["body"], msg: "Input should be a valid dictionary or object to extract fields from", input: body }] };
  }
  const fields = body as Record<string, unknown>;
  const data: Record<string, unknown> = {};
  const detail: Issue[] = [];
  for (const [name, field] of Object.entries(FIELDS)) {
    const loc = ["body", name];
    if (!Object.hasOwn(fields, name)) {
      if (field.fallback === undefined) detail.push({ type: "missing", loc, msg: "Field required", input: body });
      data[name] = field.fallback;
      continue;
    }
    const source = sources.get(name);
    const read = field.read(fields[name], source);
    // Echoed as sent: an integer's digits whole, as Python holds it (past a double's range too).
    const input = source !== undefined && DIGITS.test(source) ? rawJson(source) : fields[name];
    if ("issue" in read) {
      detail.push({ ...read.issue, loc, input });
      continue;
    }
    const broken = bounds(read.value, field);
    if (broken) detail.push({ ...broken, loc, input });
    data[name] = read.value;
  }
  if (detail.length > 0) return { ok: false, detail };
  const number = (name: string) => Number(data[name]);
  return {
    ok: true,
    data: {
      prompt: data.prompt as string,
      negative_prompt: data.negative_prompt as string,
      height: number("height"),
      width: number("width"),
      seed: data.seed as bigint,
      num_inference_steps: number("num_inference_steps"),
      guidance_scale: data.guidance_scale as number,
    },
  };
}

/** JSON text JSON.stringify writes as it is (Node 21 and later). */
const rawJson = (text: string): unknown => (JSON as unknown as { rawJSON: (text: string) => unknown }).rawJSON(text);

/** The request as the server would print it back, the seed's digits whole. */
export function bodyJson({ seed, ...rest }: EmulatedRequest): string {
  return `${JSON.stringify(rest).slice(0, -1)},"seed":${seed}}`;
}

function bounds(value: unknown, { min, max }: Field): Omit<Issue, "loc" | "input"> | undefined {
  // Python's len() counts code points, as the string's iterator does.
  const size = typeof value === "string" ? Array.from(value).length : (value as number | bigint);
  const unit = (n: number | bigint) => `${n} character${n === 1 ? "" : "s"}`;
  if (min !== undefined && size < min) {
    return typeof value === "string"
      ? { type: "string_too_short", msg: `String should have at least ${unit(min)}`, ctx: { min_length: min } }
      : { type: "greater_than_equal", msg: `Input should be greater than or equal to ${min}`, ctx: { ge: min } };
  }
  if (max !== undefined && size > max) {
    return typeof value === "string"
      ? { type: "string_too_long", msg: `String should have at most ${unit(max)}`, ctx: { max_length: max } }
      : { type: "less_than_equal", msg: `Input should be less than or equal to ${max}`, ctx: { le: max } };
  }
  return undefined;
}

function readStr(input: unknown): Read<string> {
  return typeof input === "string" ? { value: input } : { issue: { type: "string_type", msg: "Input should be a valid string" } };
}

/**
 * Where the genuine server fails with an uncaught exception, a text/plain 500
 * "Internal Server Error": a 422 whose echoed input is no JSON number (inf
 * from 1e400), or a prompt UTF-8 cannot hold (a lone surrogate, "\ud800").
 */
export function crashes(result: ReturnType<typeof validateBody>): boolean {
  if (!result.ok) return result.detail.some(({ input }) => typeof input === "number" && !Number.isFinite(input));
  return /[\ud800-\udfff]/u.test(result.data.prompt + result.data.negative_prompt);
}

const INT_TYPE = { type: "int_type", msg: "Input should be a valid integer" };
const INT_PARSING = { type: "int_parsing", msg: "Input should be a valid integer, unable to parse string as an integer" };
const TOO_BIG = { type: "int_parsing_size", msg: "Unable to parse input string as an integer, exceeded maximum size" };
const DIGITS = /^-?\d+$/;

function readInt(input: unknown, source: string | undefined): Read<bigint> {
  if (typeof input === "boolean") return { value: input ? 1n : 0n };
  if (typeof input === "number") {
    if (source !== undefined && DIGITS.test(source)) return { value: BigInt(source) };
    if (!Number.isFinite(input)) return { issue: { type: "finite_number", msg: "Input should be a finite number" } };
    if (!Number.isInteger(input)) return { issue: { type: "int_from_float", msg: "Input should be a valid integer, got a number with a fractional part" } };
    return Math.abs(input) >= 2 ** 63 ? { issue: TOO_BIG } : { value: BigInt(input) };
  }
  if (typeof input !== "string") return { issue: INT_TYPE };
  const digits = intString(input);
  if (digits === undefined) return { issue: INT_PARSING };
  // Python's int() refuses more than 4300 digits.
  return digits.replace("-", "").length > 4300 ? { issue: TOO_BIG } : { value: BigInt(digits) };
}

/** Rust's trim: Unicode White_Space (U+0085 in, U+FEFF out). */
const SPACE = "[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const TRIMMED = new RegExp(`^${SPACE}+|${SPACE}+$`, "g");

/**
 * pydantic-core's reading of an int from a string: a plain integer as it is;
 * else trimmed, one sign, a fraction of zeros dropped, underscores only single
 * and between digits, leading zeros dropped.
 */
function intString(original: string): string | undefined {
  if (/^-?(?:0|[1-9]\d*)$/.test(original)) return original;
  let text = original.replace(TRIMMED, "");
  const sign = /^[+-]/.test(text) ? text[0] : "";
  text = text.slice(sign?.length ?? 0).replace(/\.0+$/, "");
  if (!/^\d(?:_?\d)*$/.test(text)) return undefined;
  return `${sign === "-" ? "-" : ""}${text.replaceAll("_", "").replace(/^0+(?=\d)/, "")}`;
}

const RUST_FLOAT = /^[+-]?(?:inf|infinity|nan|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)$/i;

const FLOAT_TYPE = { type: "float_type", msg: "Input should be a valid number" };

function readFloat(input: unknown, source: string | undefined): Read<number> {
  if (typeof input === "boolean") return { value: input ? 1 : 0 };
  // An integer too long for a double is no float to pydantic.
  if (typeof input === "number") return !Number.isFinite(input) && source !== undefined && DIGITS.test(source) ? { issue: FLOAT_TYPE } : { value: input };
  if (typeof input !== "string") return { issue: FLOAT_TYPE };
  // Rust's float parse of the trimmed text, else of the text with single underscores between characters dropped.
  const underscored = /^[^_].*[^_]$/.test(input) && !input.includes("__") ? input.replaceAll("_", "") : "";
  const text = [input.replace(TRIMMED, ""), underscored].find((candidate) => RUST_FLOAT.test(candidate));
  if (text === undefined) return { issue: { type: "float_parsing", msg: "Input should be a valid number, unable to parse string as a number" } };
  const lower = text.toLowerCase().replace(/^\+/, "");
  if (lower.endsWith("nan")) return { value: Number.NaN };
  if (lower.endsWith("inf") || lower.endsWith("infinity")) return { value: lower.startsWith("-") ? -Infinity : Infinity };
  return { value: Number(lower) };
}
