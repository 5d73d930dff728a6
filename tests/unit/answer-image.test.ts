/** An answer's image_base64 read one way: decoded (answerImage) and as its base64 (answerDataUri) agree, whatever the data URI says. */
import { describe, expect, it } from "vitest";
import { answerDataUri, answerFormat, answerImage } from "@/lib/upstream/image";

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4]);
const answer = (image: string) => Buffer.from(`{"image_base64":${JSON.stringify(image)},"seed":12345678901234567890,"width":8}`);

describe("an answer's image", () => {
  it.each([
    ["a data URI", `data:image/png;base64,${PNG.toString("base64")}`, "image/png"],
    ["a data URI with a parameter", `data:image/png;name=x.png;base64,${PNG.toString("base64")}`, "image/png"],
    ["a data URI claiming another type", `data:image/jpeg;base64,${PNG.toString("base64")}`, "image/jpeg"],
    ["bare base64 (its type from its bytes)", PNG.toString("base64"), "image/png"],
  ])("reads %s the same both ways", (_, image, type) => {
    const json = answer(image);
    const decoded = answerImage(json);
    expect(decoded.bytes).toEqual(PNG);
    expect(decoded.contentType).toBe(type);
    expect(decoded.seed).toBe("12345678901234567890");
    expect(Buffer.from(answerDataUri(json).base64.toString("latin1"), "base64")).toEqual(PNG);
    expect(answerFormat(json)).toBe("png");
  });

  it("reads a string with escapes in it (no GPU server writes one) as its value", () => {
    const json = Buffer.from(`{"image_base64":"data:image\\/png;base64,${PNG.toString("base64")}"}`);
    expect(answerImage(json).bytes).toEqual(PNG);
    expect(answerImage(json).contentType).toBe("image/png");
    expect(answerDataUri(json).base64.toString("latin1")).toBe(PNG.toString("base64"));
  });
});
