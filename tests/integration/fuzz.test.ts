/**
 * Random bodies over real HTTP to the built gateway: never a 5xx, nothing
 * reaches the GPU server unless the body is valid, and a valid body reaches it
 * as exactly its normalised seven fields. Seeded (FUZZ_SEED to explore); on a
 * failure fast-check prints the seed and the shrunk body.
 */
import fc from "fast-check";
import { afterAll, describe, expect } from "vitest";
import { validateGenerateRequest } from "@/lib/schemas";
import { SIZE_MAX, SIZE_MIN, STEPS_MAX, STEPS_MIN } from "@/lib/schemas";
import type { GenerateRequest } from "@/lib/schemas";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { expectCleanOutput, expectIdleAndServing, readEvents } from "./harness";
import type { Gateway } from "./harness";

const SEED = Number(process.env.FUZZ_SEED ?? 20_260_601);
const MAX_BODY_BYTES = 65_536; // the default
const FIELDS = ["prompt", "negative_prompt", "height", "width", "seed", "num_inference_steps", "guidance_scale"] as const;

let emulator: Emulator;
let gateway: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  emulator = await startEmulator({ stepMs: 0, slots: 8 });
  gateway = await startFileGateway({ TEXT2IMAGE_SERVER_URL: emulator.url });
});

afterAll(() => emulator.close());

// Sizes lean small: the emulator draws a real image, and 2048x2048 takes it a fifth of a second. Multiples of 16, as the pipeline needs.
const sixteenths = (min: number, max: number) => fc.integer({ min: min / 16, max: max / 16 }).map((n) => n * 16);
const size = fc.oneof({ arbitrary: sixteenths(SIZE_MIN, 512), weight: 5 }, { arbitrary: sixteenths(SIZE_MIN, SIZE_MAX), weight: 1 });

const fieldValue = fc.oneof(
  fc.constantFrom<unknown>(0, -1, 5, 6, 12, 13, 255, 256, 2048, 2049, 0.5, 2 ** 53, "", "x", "512", null, true, [], {}),
  fc.string({ unit: "binary", maxLength: 30 }),
  fc.integer(),
  size,
  fc.double(),
  fc.jsonValue({ maxDepth: 1 }),
);

/** Objects around the real fields, each present or not and of any type, plus unknown fields. */
const shapedObject = fc
  .tuple(
    fc.record(Object.fromEntries(FIELDS.map((field) => [field, fieldValue])), { requiredKeys: [] }),
    fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 2 }),
  )
  .map(([fields, extra]) => ({ ...extra, ...fields }));

/** Bodies that break no rule; the prompt is there so the emulator's PNG varies. */
const validObject = fc
  .tuple(
    fc.record(
      {
        prompt: fc.string({ unit: "binary", minLength: 1, maxLength: 200 }),
        negative_prompt: fc.string({ unit: "binary", maxLength: 100 }),
        height: size,
        width: size,
        seed: fc.oneof(fc.constant(-1), fc.maxSafeNat()),
        num_inference_steps: fc.integer({ min: STEPS_MIN, max: STEPS_MAX }),
        guidance_scale: fc.double({ noNaN: true, noDefaultInfinity: true }),
      },
      { requiredKeys: ["prompt"] },
    ),
    fc.dictionary(fc.string({ maxLength: 8 }).filter((key) => !(FIELDS as readonly string[]).includes(key)), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 2 }),
  )
  .map(([fields, extra]) => ({ ...extra, ...fields }));

const encoder = new TextEncoder();
/** The JSON text of a value; for undefined, which JSON.stringify returns as is, encode() gives an empty body. */
const text = (value: unknown): Uint8Array<ArrayBuffer> => encoder.encode(JSON.stringify(value));

const contentType = fc.oneof(
  { arbitrary: fc.constant<string | null>("application/json"), weight: 8 },
  { arbitrary: fc.constantFrom<string | null>(null, "application/json; charset=utf-8", "application/vnd.t2i+json", "text/plain", ""), weight: 2 },
);

interface Body {
  bytes: Uint8Array<ArrayBuffer>;
  contentType: string | null;
}

const randomBody: fc.Arbitrary<Body> = fc.record({
  bytes: fc.oneof(
    { arbitrary: shapedObject.map(text), weight: 4 },
    { arbitrary: validObject.map(text), weight: 2 },
    { arbitrary: fc.jsonValue().map(text), weight: 2 },
    { arbitrary: fc.anything().map((value) => { try { return text(value); } catch { return text(null); } }), weight: 1 },
    { arbitrary: fc.uint8Array({ maxLength: 120 }).map((bytes) => new Uint8Array(bytes)), weight: 1 },
  ),
  contentType,
});

/** The request the gateway must forward for this body, or undefined when it must answer 4xx itself. */
function forwarded({ bytes, contentType }: Body): GenerateRequest | undefined {
  const media = contentType?.split(";")[0]?.trim().toLowerCase();
  if (media !== undefined && media !== "application/json" && !/^application\/.+\+json$/.test(media)) return undefined;
  if (bytes.length > MAX_BODY_BYTES) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const result = validateGenerateRequest(value);
  return result.ok ? result.data : undefined;
}

async function send(path: string, { bytes, contentType }: Body): Promise<{ status: number; body: unknown; events: unknown[] }> {
  const response = await fetch(`${gateway.url}${path}`, {
    method: "POST",
    headers: contentType === null ? {} : { "content-type": contentType },
    body: bytes,
  });
  if (response.headers.get("content-type")?.startsWith("text/event-stream")) {
    const events = await readEvents(response, performance.now());
    return { status: response.status, body: undefined, events: events.map((event) => event.data).filter(Boolean) };
  }
  return { status: response.status, body: (await response.json()) as unknown, events: [] };
}

/** What the emulator got last, if it got one more request than `before`. */
function received(before: number): unknown {
  const stats = emulator.stats();
  expect(stats.generateRequests, "requests that reached the GPU server").toBe(before + 1);
  return stats.lastBodies.at(-1);
}

/** The request as it travels: JSON (so -0 is 0), every field present. */
const onTheWire = (request: GenerateRequest): unknown => JSON.parse(JSON.stringify(request));

describe("random bodies through real HTTP", () => {
  it("never answer 5xx, and reach the GPU server only when valid, as their normalised fields", async () => {
    let valid = 0;
    await fc.assert(
      fc.asyncProperty(randomBody, fc.constantFrom("/api/generate", "/api/generate-stream"), async (body, path) => {
        const before = emulator.stats().generateRequests;
        const answer = await send(path, body);
        expect(answer.status, JSON.stringify(answer.body)).toBeLessThan(500);
        const expected = forwarded(body);
        if (expected === undefined) {
          expect([400, 413, 415, 422]).toContain(answer.status);
          expect(answer.body).toMatchObject({ detail: expect.anything() as unknown, request_id: expect.any(String) as unknown });
          expect(emulator.stats().generateRequests, "an invalid body reached the GPU server").toBe(before);
        } else {
          valid++;
          expect(answer.status).toBe(200);
          if (path === "/api/generate-stream") expect(answer.events.at(-1)).toMatchObject({ type: "complete" });
          else expect(answer.body).toMatchObject({ image_base64: expect.stringMatching(/^data:image\/jpeg;base64,/) as unknown });
          expect(received(before)).toEqual(onTheWire(expected));
        }
      }),
      { seed: SEED, numRuns: 300 },
    );
    // The mix must hold valid bodies too, or the second half of the property proved nothing.
    expect(valid).toBeGreaterThan(30);
  }, 120_000);

  it("valid bodies reach the GPU server as exactly the seven fields, defaults filled", async () => {
    await fc.assert(
      fc.asyncProperty(validObject, fc.constantFrom("/api/generate", "/api/generate-stream"), async (object, path) => {
        const before = emulator.stats().generateRequests;
        const answer = await send(path, { bytes: text(object), contentType: "application/json" });
        expect(answer.status).toBe(200);
        const got = received(before) as Record<string, unknown>;
        expect(Object.keys(got).sort()).toEqual([...FIELDS].sort());
        const validated = validateGenerateRequest(object);
        if (!validated.ok) throw new Error(`a valid body was judged invalid: ${JSON.stringify(validated.detail)}`);
        expect(got).toEqual(onTheWire(validated.data));
      }),
      { seed: SEED, numRuns: 60 },
    );
  }, 120_000);

  it("leave the gateway idle, serving, and its log clean", async () => {
    await expectIdleAndServing(gateway, { emulator });
    expectCleanOutput(gateway);
  });
});
