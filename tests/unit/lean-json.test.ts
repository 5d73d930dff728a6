import { describe, expect, it } from "vitest";
import { parseSkippingString } from "@/lib/upstream/lean-json";

const image = "data:image/png;base64," + "iVBORw0KGgo".repeat(1000);

function lean(text: string) {
  return parseSkippingString(Buffer.from(text), "image_base64");
}

describe("parseSkippingString", () => {
  it("parses everything but the skipped string, and reports its length", () => {
    const text = JSON.stringify({ image_base64: image, seed: 7, image_id: null, nested: { image_base64: "x" } });
    expect(lean(text)).toEqual({
      value: { image_base64: "", seed: 7, image_id: null, nested: { image_base64: "x" } },
      skippedLength: image.length,
    });
  });

  it("finds the key after nested values, arrays and strings holding quotes and braces", () => {
    const text = `{ "a" : [1, {"b": "}\\"]"}], "c": "image_base64", "d": -1.5e3 ,\n "image_base64" : "${image}" }`;
    expect(lean(text)).toEqual({
      value: { a: [1, { b: '}"]' }], c: "image_base64", d: -1500, image_base64: "" },
      skippedLength: image.length,
    });
  });

  it("gives the same answer as JSON.parse when the string has escapes", () => {
    const text = JSON.stringify({ image_base64: 'a\\"b/c\n', seed: 1 });
    expect(lean(text)).toEqual({ value: JSON.parse(text) as unknown, skippedLength: Buffer.byteLength('a\\"b/c\n') });
  });

  it("reports no length when the key is absent, empty or not a string", () => {
    expect(lean('{"seed": 1}').skippedLength).toBeUndefined();
    expect(lean('{"image_base64": 12}').skippedLength).toBeUndefined();
    expect(lean('{"image_base64": ""}').skippedLength).toBe(0);
    expect(lean("[1,2]")).toEqual({ value: [1, 2], skippedLength: undefined });
  });

  it.each([
    `{"image_base64": "${image}"`,
    `{"image_base64": "${image}", }`,
    `{"image_base64": "${image}" "seed": 1}`,
    `{"seed": 1,, "image_base64": "${image}"}`,
    `{"image_base64": "${image}`,
    `{"seed": tru, "image_base64": "${image}"}`,
    `{"image_base64": "${image}"} trailing`,
    "",
  ])("throws SyntaxError on malformed JSON: %#", (text) => {
    expect(() => lean(text)).toThrow(SyntaxError);
  });

  it("rejects a raw control character anywhere in the skipped string, as JSON.parse does", () => {
    // Every position of the first and last words, and the middle: the scan reads aligned 16-byte blocks.
    const positions = [...Array.from({ length: 40 }, (_, i) => i), image.length >> 1, ...Array.from({ length: 40 }, (_, i) => image.length - 1 - i)];
    for (const at of positions) {
      for (const control of ["\u0000", "\u0001", "\u001f"]) {
        const text = `{"image_base64": "${image.slice(0, at)}${control}${image.slice(at + 1)}"}`;
        expect(() => lean(text), `${JSON.stringify(control)} at ${at}`).toThrow(SyntaxError);
      }
    }
  });

  it("skips bytes from space upwards and UTF-8, and decodes a late escape as JSON.parse does", () => {
    const text = JSON.stringify({ image_base64: ` ~\u007féü${image}` });
    expect(lean(text).skippedLength).toBe(Buffer.byteLength(` ~\u007féü${image}`));
    const escaped = JSON.stringify({ image_base64: `${image}\n` });
    expect(lean(escaped)).toEqual({ value: JSON.parse(escaped) as unknown, skippedLength: image.length + 1 });
  });
});

