/**
 * Property tests with fast-check: random request bodies through the parsing
 * and validation /api/generate uses, the lean JSON parser against JSON.parse,
 * and the SSE splitter under any chunking. Runs are seeded so a failure is
 * reproducible: fast-check prints the seed and the path of the shrunk
 * counterexample; FUZZ_SEED=<n> explores another part of the space.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";


import { GatewayError } from "@/lib/errors";
import { readJsonObject } from "@/lib/http";
import { codePoints } from "@/lib/pydantic";
import { PROMPT_MAX_CHARS, SEED_MAX, SIZE_MAX, SIZE_MIN, SIZE_MULTIPLE_DEFAULT, STEPS_MAX, STEPS_MIN, validateGenerateRequest } from "@/lib/schemas";
import type { GenerateRequest } from "@/lib/schemas";
import { EventSplitter } from "@/lib/sse";
import { parseSkippingString } from "@/lib/upstream/lean-json";

const SEED = Number(process.env.FUZZ_SEED ?? 20_260_601);
/** Small, so that random bodies pass it now and then. */
const MAX_BODY_BYTES = 4096;
const DEFAULT_MAX_BODY_BYTES = 65_536;
const FIELDS = ["prompt", "negative_prompt", "height", "width", "seed", "num_inference_steps", "guidance_scale"] as const;
const DEFAULTS = { negative_prompt: "", height: 1024, width: 1024, seed: -1, num_inference_steps: 9, guidance_scale: 0 };

// ---- request bodies ----

/** Values near every rule's edges, of every JSON type. */
const edgeValue = fc.constantFrom<unknown>(
  0, -0, -1, 1, 0.5, -1.5, STEPS_MIN - 1, STEPS_MIN, STEPS_MAX, STEPS_MAX + 1, SIZE_MIN - 1, SIZE_MIN, SIZE_MAX, SIZE_MAX + 1,
  2 ** 53 - 1, 2 ** 53, -(2 ** 53), 1e308, -1e308, 5e-324, "", "x", "512", "1e3", " 9 ", "NaN", "p".repeat(PROMPT_MAX_CHARS),
  "p".repeat(PROMPT_MAX_CHARS + 1), "😀".repeat(PROMPT_MAX_CHARS / 2), "😀".repeat(PROMPT_MAX_CHARS / 2 + 1), "\u0000", "\ud800",
  true, false, null, [], {}, ["a"], { prompt: "x" },
);

/** Any value a JSON body may hold in a field, biased to the field's own type. */
const fieldValue = fc.oneof(
  { arbitrary: edgeValue, weight: 3 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 40 }), weight: 2 },
  { arbitrary: fc.integer(), weight: 2 },
  { arbitrary: fc.integer({ min: 200, max: 2100 }), weight: 2 },
  { arbitrary: fc.double(), weight: 1 },
  { arbitrary: fc.jsonValue({ maxDepth: 2 }), weight: 1 },
);

/** Objects built around the real fields: each present or not, of a random type, plus unknown fields. */
const shapedBody = fc
  .tuple(
    fc.record(Object.fromEntries(FIELDS.map((field) => [field, fieldValue])), { requiredKeys: [] }),
    fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }),
  )
  .map(([fields, extra]) => ({ ...extra, ...fields }));

function jsonOrUndefined(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch {
    return undefined; // a BigInt, a cycle: not JSON-able
  }
}

const contentType = fc.oneof(
  { arbitrary: fc.constant("application/json"), weight: 12 },
  {
    arbitrary: fc.constantFrom<string | null>(
      null, "application/json; charset=utf-8", "Application/JSON", "application/problem+json", "text/plain",
      "application/x-www-form-urlencoded", "", "application/jsonx", "multipart/form-data; boundary=x", "json",
    ),
    weight: 3,
  },
);

interface Body {
  bytes: Uint8Array<ArrayBuffer>;
  contentType: string | null;
}

const encoder = new TextEncoder();
const asBody = (text: fc.Arbitrary<string>): fc.Arbitrary<Body> =>
  fc.record({ bytes: text.map((value) => encoder.encode(value)), contentType });

const BODIES: Record<string, [fc.Arbitrary<Body>, number]> = {
  "fc.jsonValue()": [asBody(fc.jsonValue().map((value) => JSON.stringify(value))), 2500],
  "objects built around the real fields": [asBody(shapedBody.map((value) => JSON.stringify(value))), 4000],
  "fc.anything(), serialised where JSON-able": [
    asBody(fc.anything().map(jsonOrUndefined).filter((text): text is string => text !== undefined)),
    1500,
  ],
  "random bytes": [fc.record({ bytes: fc.uint8Array({ maxLength: 200 }).map((bytes) => new Uint8Array(bytes)), contentType }), 1500],
  "JSON text with random bytes overwritten": [
    fc
      .tuple(shapedBody, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), contentType)
      .map(([value, edits, type]) => {
        const bytes = encoder.encode(JSON.stringify(value));
        for (const [at, byte] of edits) bytes[at % bytes.length] = byte;
        return { bytes, contentType: type };
      }),
    1000,
  ],
};

type Outcome = { ok: true; data: GenerateRequest } | { ok: false; status: number; code: string; detail: unknown };

/** What /api/generate's parsing and validation make of a body, before anything is admitted. */
async function outcomeOf({ bytes, contentType }: Body, maxBytes = MAX_BODY_BYTES): Promise<Outcome> {
  const headers = new Headers();
  if (contentType !== null) headers.set("content-type", contentType);
  // A byte body keeps the Content-Type as given (a string body would get text/plain).
  const request = new Request("http://x/api/generate", { method: "POST", body: bytes, headers });
  try {
    const result = validateGenerateRequest(await readJsonObject(request, { maxBytes, timeoutMs: 5000 }));
    return result.ok ? { ok: true, data: result.data } : { ok: false, status: 422, code: "validation_failed", detail: result.detail };
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error; // anything else would be a 500
    return { ok: false, status: error.status, code: error.code, detail: error.detail };
  }
}

/** The README's table for a body, written independently of lib/http.ts. */
function expectedCode({ bytes, contentType }: Body): string | undefined {
  const media = contentType?.split(";")[0]?.trim().toLowerCase();
  if (media !== undefined && media !== "application/json" && !/^application\/.+\+json$/.test(media)) return "unsupported_media_type";
  if (bytes.length > MAX_BODY_BYTES) return "payload_too_large";
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return "invalid_json";
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "invalid_body";
  return validateGenerateRequest(value).ok ? undefined : "validation_failed";
}

function expectValidRequest(data: GenerateRequest): void {
  expect(Object.keys(data).sort()).toEqual([...FIELDS].sort());
  expect(codePoints(data.prompt)).toBeGreaterThanOrEqual(1);
  expect(codePoints(data.prompt)).toBeLessThanOrEqual(PROMPT_MAX_CHARS);
  expect(codePoints(data.negative_prompt)).toBeLessThanOrEqual(PROMPT_MAX_CHARS);
  for (const size of [data.width, data.height]) {
    expect(Number.isInteger(size) && size >= SIZE_MIN && size <= SIZE_MAX && size % SIZE_MULTIPLE_DEFAULT === 0).toBe(true);
  }
  const { seed } = data;
  expect(typeof seed === "bigint" ? seed > Number.MAX_SAFE_INTEGER && seed <= SEED_MAX : Number.isSafeInteger(seed) && seed >= -1).toBe(true);
  expect(Number.isInteger(data.num_inference_steps) && data.num_inference_steps >= STEPS_MIN && data.num_inference_steps <= STEPS_MAX).toBe(true);
  expect(Number.isFinite(data.guidance_scale)).toBe(true);
}

describe("random /api/generate bodies through readJsonObject + validateGenerateRequest", () => {
  it.each(Object.entries(BODIES))("%s: a valid request, or a GatewayError with the table's 4xx, never anything else", async (_name, [bodies, numRuns]) => {
    await fc.assert(
      fc.asyncProperty(bodies, async (body) => {
        const outcome = await outcomeOf(body);
        if (outcome.ok) {
          expectValidRequest(outcome.data);
        } else {
          expect([400, 413, 415, 422]).toContain(outcome.status);
          if (outcome.status === 422) {
            // FastAPI's list shape: at least one entry, each with loc, msg and type.
            expect(Array.isArray(outcome.detail) && outcome.detail.length > 0).toBe(true);
            for (const entry of outcome.detail as { loc: unknown[]; msg: unknown; type: unknown }[]) {
              expect(entry.loc[0]).toBe("body");
              expect(typeof entry.msg === "string" && typeof entry.type === "string").toBe(true);
            }
          } else {
            expect(typeof outcome.detail).toBe("string");
          }
        }
        expect(outcome.ok ? undefined : outcome.code).toBe(expectedCode(body));
      }),
      { seed: SEED, numRuns },
    );
  });
});

/** A body that breaks no rule: each optional field present or not, with extra fields the gateway drops. */
const validBody = fc
  .tuple(
    fc.record(
      {
        prompt: fc.oneof(
          fc.string({ unit: "binary", minLength: 1, maxLength: 300 }),
          fc.constantFrom("p".repeat(PROMPT_MAX_CHARS), "😀".repeat(PROMPT_MAX_CHARS / 2), "x"),
        ),
        negative_prompt: fc.oneof(fc.string({ unit: "binary", maxLength: 300 }), fc.constantFrom("", "n".repeat(PROMPT_MAX_CHARS))),
        height: fc.integer({ min: SIZE_MIN / SIZE_MULTIPLE_DEFAULT, max: SIZE_MAX / SIZE_MULTIPLE_DEFAULT }).map((n) => n * SIZE_MULTIPLE_DEFAULT),
        width: fc.integer({ min: SIZE_MIN / SIZE_MULTIPLE_DEFAULT, max: SIZE_MAX / SIZE_MULTIPLE_DEFAULT }).map((n) => n * SIZE_MULTIPLE_DEFAULT),
        seed: fc.oneof(fc.constant(-1), fc.maxSafeNat(), fc.nat()),
        num_inference_steps: fc.integer({ min: STEPS_MIN, max: STEPS_MAX }),
        guidance_scale: fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer({ min: -20, max: 20 })),
      },
      { requiredKeys: ["prompt"] },
    ),
    fc.dictionary(fc.string({ maxLength: 12 }).filter((key) => !(FIELDS as readonly string[]).includes(key)), fc.jsonValue({ maxDepth: 1 }), {
      maxKeys: 3,
    }),
  )
  .map(([fields, extra]) => ({ ...extra, ...fields }));

describe("random valid bodies", () => {
  it("normalise to exactly the seven fields, the given values kept and the defaults filled", async () => {
    await fc.assert(
      fc.asyncProperty(validBody, async (body) => {
        const text = JSON.stringify(body);
        const outcome = await outcomeOf({ bytes: encoder.encode(text), contentType: "application/json" }, DEFAULT_MAX_BODY_BYTES);
        if (!outcome.ok) throw new Error(`rejected: ${JSON.stringify(outcome.detail)}`);
        expectValidRequest(outcome.data);
        // What JSON carried (-0 arrives as 0), field by field, or the default.
        const sent = JSON.parse(text) as Record<string, unknown>;
        expect(outcome.data).toEqual({ ...DEFAULTS, ...Object.fromEntries(FIELDS.filter((field) => field in sent).map((field) => [field, sent[field]])) });
      }),
      { seed: SEED, numRuns: 1500 },
    );
  });
});

// ---- lean JSON ----

const KEY = "image_base64";
const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** A long image string: base64 as servers send it, or any text (escapes included) now and then. */
const imageString = fc.oneof(
  { arbitrary: fc.tuple(fc.integer({ min: 0, max: 20_000 }), fc.nat()).map(([length, offset]) => `data:image/png;base64,${BASE64.repeat(Math.ceil(length / 64) + 1).slice(offset % 64, (offset % 64) + length)}`), weight: 4 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 200 }), weight: 1 },
);
const whitespace = fc.constantFrom("", "", "", " ", "\n", "\t", "\r\n  ");

/** JSON object text with a long image_base64 somewhere at its top level, random layout, and now and then the key again. */
const answerText = fc
  .record({
    before: fc.array(fc.tuple(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 })), { maxLength: 4 }),
    image: imageString,
    after: fc.array(fc.tuple(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 })), { maxLength: 4 }),
    again: fc.option(fc.oneof(fc.jsonValue({ maxDepth: 1 }), imageString), { freq: 8 }),
    space: fc.array(whitespace, { minLength: 8, maxLength: 8 }),
    nested: fc.boolean(),
  })
  .map(({ before, image, after, again, space, nested }) => {
    const [s0, s1, s2, s3, s4, s5, s6, s7] = space as [string, string, string, string, string, string, string, string];
    const entry = ([key, value]: [string, unknown]) => `${JSON.stringify(key)}${s1}:${s2}${JSON.stringify(value)}`;
    const entries: [string, unknown][] = [
      ...before,
      ...(nested ? [["meta", { [KEY]: "nested, not the one" }] as [string, unknown]] : []),
      [KEY, image],
      ...after,
      ...(again === null ? [] : [[KEY, again] as [string, unknown]]),
    ];
    return `${s0}{${s3}${entries.map(entry).join(`${s4},${s5}`)}${s6}}${s7}`;
  });

/** JSON.parse's answer, with the image string (if any) blanked as the lean parser leaves it. */
function blanked(value: unknown): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  const object = value as Record<string, unknown>;
  return typeof object[KEY] === "string" ? { ...object, [KEY]: "" } : object;
}

type Parsed = { threw: false; value: unknown; skippedLength: number | undefined } | { threw: true; error: unknown };

function reference(text: Buffer): Parsed {
  try {
    const value: unknown = JSON.parse(text.toString("utf8"));
    const image = typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)[KEY] : undefined;
    return { threw: false, value: blanked(value), skippedLength: typeof image === "string" ? Buffer.byteLength(image) : undefined };
  } catch (error) {
    return { threw: true, error };
  }
}

function lean(text: Buffer | Buffer[]): Parsed {
  try {
    const parsed = parseSkippingString(text, KEY);
    return { threw: false, value: blanked(parsed.value), skippedLength: parsed.skippedLength };
  } catch (error) {
    return { threw: true, error };
  }
}

/** Given cut points, the lean parser gets the text in pieces, as an answer arrives. */
function expectSameAsJsonParse(text: Buffer, cutAt?: number[]): void {
  const expected = reference(text);
  const actual = lean(cutAt ? cut(text, cutAt) : text);
  expect(actual.threw, `JSON.parse ${expected.threw ? "throws" : "parses"}: ${text.toString().slice(0, 300)}`).toBe(expected.threw);
  if (actual.threw) expect(actual.error).toBeInstanceOf(SyntaxError);
  else expect(actual).toEqual(expected);
}

type Mutation = ["truncate" | "delete" | "insert" | "replace", number, string];
const mutation = fc.tuple(
  fc.constantFrom<Mutation[0]>("truncate", "delete", "insert", "replace"),
  fc.nat(),
  fc.oneof(fc.constantFrom('"', "\\", "{", "}", "[", "]", ":", ",", " ", "\n", "\u0001", "\u001f", "\t", "a", "0", "-", "e", "\\u0041", "\\x"), fc.string({ unit: "binary", minLength: 1, maxLength: 2 })),
);

function mutate(text: string, mutations: Mutation[]): string {
  let out = text;
  for (const [kind, position, insert] of mutations) {
    // Half of the edits land near the key, where the parser's fast path decides.
    const anchor = out.indexOf(`"${KEY}"`);
    const at = anchor >= 0 && position % 2 === 0 ? Math.min(out.length, anchor + (position % 40)) : position % (out.length + 1);
    if (kind === "truncate") out = out.slice(0, at);
    else if (kind === "delete") out = out.slice(0, at) + out.slice(at + 1);
    else if (kind === "insert") out = out.slice(0, at) + insert + out.slice(at);
    else out = out.slice(0, at) + insert + out.slice(at + insert.length);
  }
  return out;
}

describe("parseSkippingString against JSON.parse", () => {
  it("equals JSON.parse (image_base64 blanked, its byte length reported) for any object with a long image_base64", () => {
    fc.assert(
      fc.property(answerText, (text) => {
        expect(lean(Buffer.from(text)).threw).toBe(false);
        expectSameAsJsonParse(Buffer.from(text));
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });

  it("throws a SyntaxError iff JSON.parse throws, and agrees otherwise, for mutated and truncated answers", () => {
    fc.assert(
      fc.property(answerText, fc.array(mutation, { minLength: 1, maxLength: 3 }), (text, mutations) => {
        expectSameAsJsonParse(Buffer.from(mutate(text, mutations)));
      }),
      { seed: SEED, numRuns: 4000 },
    );
  });

  it("gives the same answer when the text comes in chunks, cut anywhere", () => {
    const cuts = fc.array(fc.nat(), { maxLength: 40 });
    fc.assert(
      fc.property(answerText, cuts, (text, points) => {
        expectSameAsJsonParse(Buffer.from(text), points);
      }),
      { seed: SEED, numRuns: 2000 },
    );
    fc.assert(
      fc.property(answerText, fc.array(mutation, { minLength: 1, maxLength: 3 }), cuts, (text, mutations, points) => {
        expectSameAsJsonParse(Buffer.from(mutate(text, mutations)), points);
      }),
      { seed: SEED, numRuns: 3000 },
    );
  });

  it.each([
    ["a later duplicate key", '{"image_base64":"data:image/png;base64,AAAA","image_base64":5}'],
    ["a later duplicate key, empty", '{"image_base64":"data:image/png;base64,AAAA","image_base64":""}'],
    ["a later duplicate key, escaped", '{"image_base64":"data:image/png;base64,AAAA","image\\u005fbase64":""}'],
    ["a raw newline in the image", '{"image_base64":"data:image/png;base64,AA\nAA","seed":1}'],
    ["a raw NUL in the image", '{"image_base64":"data:image/png;base64,AA\u0000AA","seed":1}'],
    ["a raw tab in an image of odd length", '{"image_base64":"AAAAAAAAA\tA"}'],
  ])("found by the properties above: %s", (_name, text) => {
    expectSameAsJsonParse(Buffer.from(text));
  });

  it("agrees with JSON.parse on any JSON text at all", () => {
    fc.assert(
      fc.property(fc.jsonValue(), whitespace, (value, space) => {
        expectSameAsJsonParse(Buffer.from(space + JSON.stringify(value, null, space.includes("\n") ? 1 : undefined)));
      }),
      { seed: SEED, numRuns: 1000 },
    );
  });
});

// ---- SSE splitting ----

const lineEnd = fc.constantFrom("\n", "\r\n", "\r");
const line = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }).map((value) => `data: ${JSON.stringify(value)}`),
  imageString.map((image) => `data: {"type":"complete","image_base64":${JSON.stringify(image)}}`),
  fc.constantFrom(": keep-alive", ":", "event: message", "id: 7", "retry: 1000", "data:", "data"),
);
/** One event: lines that share one line ending, then a blank line. */
const event = fc.tuple(fc.array(line, { minLength: 1, maxLength: 3 }), lineEnd).map(([lines, end]) => lines.map((text) => text + end).join("") + end);

/** Cuts `bytes` at the given points (any number, anywhere, empty pieces included). */
function cut(bytes: Buffer, points: number[]): Buffer[] {
  const sorted = points.map((point) => point % (bytes.length + 1)).sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const point of sorted) {
    pieces.push(bytes.subarray(from, point));
    from = point;
  }
  pieces.push(bytes.subarray(from));
  return pieces;
}

function split(pieces: Buffer[]): { events: string[]; pending: number } {
  const splitter = new EventSplitter();
  const events = pieces.flatMap((piece) => splitter.push(piece).map((block) => block.toString("utf8")));
  return { events, pending: splitter.pending };
}

describe("EventSplitter", () => {
  it("gives the same events however the stream is chunked, each event's bytes unchanged", () => {
    fc.assert(
      fc.property(fc.array(event, { minLength: 1, maxLength: 8 }), fc.string({ maxLength: 30 }).filter((rest) => !/[\r\n]/.test(rest)), fc.array(fc.nat(), { maxLength: 40 }), (events, unfinished, points) => {
        const stream = Buffer.from(events.join("") + unfinished);
        const whole = split([stream]);
        expect(whole.events).toEqual(events);
        expect(whole.pending).toBe(Buffer.byteLength(unfinished));
        expect(split(cut(stream, points))).toEqual(whole);
        // One byte at a time is the hardest chunking of all (kept for streams without a long image).
        if (stream.length <= 4096) expect(split(Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1)))).toEqual(whole);
      }),
      { seed: SEED, numRuns: 1000 },
    );
  });

  it("cuts a chunk holding tens of thousands of small events in linear time, without deep recursion", () => {
    // A proxy that buffered an idle stream's keep-alives hands them over in one piece.
    const count = 50_000;
    const startedAt = performance.now();
    const events = split([Buffer.from(":\n\n".repeat(count))]).events;
    expect(events).toHaveLength(count);
    expect(performance.now() - startedAt).toBeLessThan(1000);
  });
});
