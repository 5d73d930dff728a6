/**
 * pydantic 2's lax coercions as FastAPI applies them to a JSON body: what the
 * original gateway and the genuine server accept for an int, float and str
 * field, and the error they give. Follows pydantic-core's `str_as_int`,
 * `float_as_int`, `str_as_float` (src/input/shared.rs). Pure: the page uses it.
 */

interface Refusal {
  type: string;
  msg: string;
}

export type Coerced<T> = { value: T } | { refusal: Refusal };

const INT_TYPE: Refusal = { type: "int_type", msg: "Input should be a valid integer" };
const INT_PARSING: Refusal = { type: "int_parsing", msg: "Input should be a valid integer, unable to parse string as an integer" };
const INT_FROM_FLOAT: Refusal = { type: "int_from_float", msg: "Input should be a valid integer, got a number with a fractional part" };
const INT_PARSING_SIZE: Refusal = { type: "int_parsing_size", msg: "Unable to parse input string as an integer, exceeded maximum size" };
const FLOAT_TYPE: Refusal = { type: "float_type", msg: "Input should be a valid number" };
const FLOAT_PARSING: Refusal = { type: "float_parsing", msg: "Input should be a valid number, unable to parse string as a number" };
export const FINITE_NUMBER: Refusal = { type: "finite_number", msg: "Input should be a finite number" };
const STRING_TYPE: Refusal = { type: "string_type", msg: "Input should be a valid string" };
const STRING_UNICODE: Refusal = { type: "string_unicode", msg: "Input should be a valid string, unable to parse raw data as a unicode string" };

/** Python's int("…") refuses more than 4300 digits (CPython's int_max_str_digits); pydantic says so. */
const MAX_INT_DIGITS = 4300;
const JSON_INT = /^-?(?:0|[1-9]\d*)$/;
/** Floats as big as 2**63 do not fit pydantic's i64 path: `float_as_int` refuses them. */
const I64_LIMIT = 2 ** 63;

/** A JSON number with its text: `10000000000000000000` is a Python int (kept exactly), `1e19` a float (refused past 2**63), one double. */
export class JsonNumber {
  constructor(
    readonly value: number,
    readonly source: string,
  ) {}
}

/** An int field; a number without its text is taken as JSON.stringify writes it (what a JavaScript client sends). */
export function laxInt(input: unknown): Coerced<bigint> {
  if (typeof input === "boolean") return { value: input ? 1n : 0n };
  if (typeof input === "number") return laxInt(new JsonNumber(input, JSON.stringify(input)));
  if (input instanceof JsonNumber) {
    if (JSON_INT.test(input.source)) return { value: BigInt(input.source) };
    return floatAsInt(input.value);
  }
  if (typeof input === "string") return strAsInt(input);
  return { refusal: INT_TYPE };
}

function floatAsInt(value: number): Coerced<bigint> {
  if (!Number.isFinite(value)) return { refusal: FINITE_NUMBER };
  if (!Number.isInteger(value)) return { refusal: INT_FROM_FLOAT };
  if (Math.abs(value) >= I64_LIMIT) return { refusal: INT_PARSING_SIZE };
  return { value: BigInt(value) };
}

function strAsInt(text: string): Coerced<bigint> {
  if (JSON_INT.test(text)) {
    return text.replace("-", "").length > MAX_INT_DIGITS ? { refusal: INT_PARSING_SIZE } : { value: BigInt(text) };
  }
  const cleaned = cleanIntString(text);
  if (cleaned === undefined || !JSON_INT.test(cleaned)) return { refusal: INT_PARSING };
  return { value: BigInt(cleaned) };
}

/** Rust's `str::trim`: Unicode White_Space, which is not quite JavaScript's (U+0085 in, U+FEFF out). */
const RUST_WHITESPACE = "\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const RUST_TRIM = new RegExp(`^[${RUST_WHITESPACE}]+|[${RUST_WHITESPACE}]+$`, "g");

/** pydantic-core's `clean_int_str`: trimmed, a sign, leading zeros, a `.` and zeros, single underscores dropped; undefined when unchanged. */
function cleanIntString(original: string): string | undefined {
  let text = original.replace(RUST_TRIM, "");
  if (text.startsWith("+")) {
    if (text[1] === "-") return undefined;
    text = text.slice(1);
  }
  let sign = "";
  if (text.startsWith("-")) {
    if (text[1] === "-" || text[1] === "+") return undefined;
    sign = "-";
    text = text.slice(1);
  }
  const unpadded = stripLeadingZeros(text);
  if (unpadded === undefined) return undefined;
  text = unpadded;
  const dot = text.indexOf(".");
  if (dot >= 0 && /^0+$/.test(text.slice(dot + 1))) text = text.slice(0, dot);
  const joined = stripUnderscores(text);
  if (joined !== undefined) return sign + joined;
  if (text.length === original.length) return undefined;
  return sign + text;
}

/** Keeps one zero for "000" and "00.0"; underscores among the leading zeros go too. */
function stripLeadingZeros(text: string): string | undefined {
  const first = text[0];
  if (first === undefined) return undefined;
  if (first !== "0") return /[1-9-]/.test(first) ? text : undefined;
  for (let i = 1; i < text.length; i++) {
    const char = text[i] as string;
    if (char === "0" || char === "_") continue;
    if (/[1-9-]/.test(char)) return text.slice(i);
    if (char === ".") return text.slice(i - 1);
    return undefined;
  }
  return text.slice(-1);
}

/** Python's rule: underscores only single and between characters, as in 1_000. */
function stripUnderscores(text: string): string | undefined {
  if (text.startsWith("_") || text.endsWith("_") || !text.includes("_") || text.includes("__")) return undefined;
  return text.replaceAll("_", "");
}

/** A float field, strings by Rust's `str.parse::<f64>()`: a sign, then inf, infinity, nan, or digits, point, exponent. */
const RUST_FLOAT = /^[+-]?(?:inf|infinity|nan|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)$/i;

export function laxFloat(input: unknown): Coerced<number> {
  if (typeof input === "boolean") return { value: input ? 1 : 0 };
  if (typeof input === "number") return { value: input };
  if (input instanceof JsonNumber) {
    // An int too big for a float: Python's float() of it overflows, which pydantic reports as the wrong type.
    if (!Number.isFinite(input.value) && JSON_INT.test(input.source)) return { refusal: FLOAT_TYPE };
    return { value: input.value };
  }
  if (typeof input === "string") {
    const trimmed = input.replace(RUST_TRIM, "");
    if (RUST_FLOAT.test(trimmed)) return { value: parseRustFloat(trimmed) };
    const joined = stripUnderscores(input);
    if (joined !== undefined && RUST_FLOAT.test(joined)) return { value: parseRustFloat(joined) };
    return { refusal: FLOAT_PARSING };
  }
  return { refusal: FLOAT_TYPE };
}

function parseRustFloat(text: string): number {
  const lower = text.toLowerCase().replace(/^\+/, "");
  if (lower.endsWith("nan")) return Number.NaN;
  if (lower.endsWith("inf") || lower.endsWith("infinity")) return lower.startsWith("-") ? -Infinity : Infinity;
  return Number(lower);
}

/** A lone surrogate (JSON's "\ud800"): a code point no UTF-8 can hold. */
const LONE_SURROGATE = /[\ud800-\udfff]/u;

/** A str field: only strings (pydantic 2 no longer turns numbers into strings), and only ones UTF-8 can hold. */
export function laxStr(input: unknown): Coerced<string> {
  if (typeof input !== "string") return { refusal: STRING_TYPE };
  return LONE_SURROGATE.test(input) ? { refusal: STRING_UNICODE } : { value: input };
}

/** Python's len(): code points, so an emoji counts once where JavaScript's length counts two. */
export function codePoints(text: string): number {
  return Array.from(text).length;
}
