import { describe, expect, it } from "vitest";
import { requestJson, validateGenerateRequest } from "@/lib/schemas";

function detailOf(body: unknown) {
  const result = validateGenerateRequest(body);
  if (result.ok) throw new Error("expected a validation failure");
  return result.detail;
}

describe("generate request validation", () => {
  it("fills every default the contract names, so all seven fields go upstream", () => {
    expect(validateGenerateRequest({ prompt: "a fox" })).toEqual({
      ok: true,
      data: {
        prompt: "a fox",
        negative_prompt: "",
        height: 1024,
        width: 1024,
        seed: -1,
        num_inference_steps: 9,
        guidance_scale: 0,
      },
    });
  });

  it("drops fields the contract does not know", () => {
    const result = validateGenerateRequest({ prompt: "x", extra: 1, __proto__x: 2 });
    expect(result.ok && Object.keys(result.data)).not.toContain("extra");
  });

  it("accepts the bounds themselves", () => {
    const body = { prompt: "p".repeat(2000), negative_prompt: "n".repeat(2000), height: 256, width: 2048, num_inference_steps: 6 };
    expect(validateGenerateRequest(body).ok).toBe(true);
    expect(validateGenerateRequest({ prompt: "x", num_inference_steps: 12, seed: 0, guidance_scale: -1.5 }).ok).toBe(true);
  });

  it.each([
    [{}, "prompt", "missing", "Field required", {}, undefined],
    [{ prompt: "" }, "prompt", "string_too_short", "String should have at least 1 character", "", { min_length: 1 }],
    [{ prompt: "p".repeat(2001) }, "prompt", "string_too_long", "String should have at most 2000 characters", "p".repeat(2001), { max_length: 2000 }],
    [{ prompt: 5 }, "prompt", "string_type", "Input should be a valid string", 5, undefined],
    [{ prompt: "x", negative_prompt: null }, "negative_prompt", "string_type", "Input should be a valid string", null, undefined],
    [{ prompt: "x", height: 255 }, "height", "greater_than_equal", "Input should be greater than or equal to 256", 255, { ge: 256 }],
    [{ prompt: "x", width: 2049 }, "width", "less_than_equal", "Input should be less than or equal to 2048", 2049, { le: 2048 }],
    [{ prompt: "x", width: 2 ** 60 }, "width", "less_than_equal", "Input should be less than or equal to 2048", 2 ** 60, { le: 2048 }],
    [{ prompt: "x", width: 1000 }, "width", "multiple_of", "Input should be a multiple of 16", 1000, { multiple_of: 16 }],
    [{ prompt: "x", height: 512.5 }, "height", "int_from_float", "Input should be a valid integer, got a number with a fractional part", 512.5, undefined],
    [{ prompt: "x", height: "512.5" }, "height", "int_parsing", "Input should be a valid integer, unable to parse string as an integer", "512.5", undefined],
    [{ prompt: "x", height: null }, "height", "int_type", "Input should be a valid integer", null, undefined],
    [{ prompt: "x", seed: -2 }, "seed", "greater_than_equal", "Input should be greater than or equal to -1", -2, { ge: -1 }],
    [{ prompt: "x", seed: "18446744073709551616" }, "seed", "less_than_equal", "Input should be less than or equal to 18446744073709551615", "18446744073709551616", { le: 18446744073709551615 }],
    [{ prompt: "x", seed: 1.5 }, "seed", "int_from_float", "Input should be a valid integer, got a number with a fractional part", 1.5, undefined],
    [{ prompt: "x", num_inference_steps: 5 }, "num_inference_steps", "greater_than_equal", "Input should be greater than or equal to 6", 5, { ge: 6 }],
    [{ prompt: "x", num_inference_steps: true }, "num_inference_steps", "greater_than_equal", "Input should be greater than or equal to 6", true, { ge: 6 }],
    [{ prompt: "x", guidance_scale: "high" }, "guidance_scale", "float_parsing", "Input should be a valid number, unable to parse string as a number", "high", undefined],
    [{ prompt: "x", guidance_scale: "nan" }, "guidance_scale", "finite_number", "Input should be a finite number", "nan", undefined],
  ])("rejects %j at %s with FastAPI's entry", (body, field, type, msg, input, ctx) => {
    expect(detailOf(body)).toEqual([{ type, loc: ["body", field], msg, input, ...(ctx ? { ctx } : {}) }]);
  });

  it("reads fields as pydantic's lax mode does", () => {
    const result = validateGenerateRequest({ prompt: "x", width: "512", height: 1024.0, seed: " 7 ", num_inference_steps: "6.0", guidance_scale: "2.5" });
    expect(result).toEqual({ ok: true, data: expect.objectContaining({ width: 512, height: 1024, seed: 7, num_inference_steps: 6, guidance_scale: 2.5 }) as unknown });
  });

  it("keeps a seed past 2^53 digit for digit, as a bigint, and writes it so upstream", () => {
    const result = validateGenerateRequest({ prompt: "x", seed: "18446744073709551615" });
    expect(result.ok && result.data.seed).toBe(18446744073709551615n);
    expect(result.ok && requestJson(result.data)).toMatch(/"seed":18446744073709551615}$/);
  });

  it("counts prompt lengths in code points, as Python does", () => {
    expect(validateGenerateRequest({ prompt: "😀".repeat(2000) }).ok).toBe(true);
    expect(detailOf({ prompt: "😀".repeat(2001) })[0]?.type).toBe("string_too_long");
  });

  it("takes SIZE_MULTIPLE from its caller", () => {
    expect(validateGenerateRequest({ prompt: "x", width: 1000 }, { sizeMultiple: 8 }).ok).toBe(true);
    expect(validateGenerateRequest({ prompt: "x", width: 1000 }, { sizeMultiple: 64 }).ok).toBe(false);
  });

  it("reports every bad field, once each", () => {
    const detail = detailOf({ num_inference_steps: 0.5, width: 99999, height: 1, prompt: "" });
    expect(detail.map((d) => d.loc[1])).toEqual(["prompt", "height", "width", "num_inference_steps"]);
  });
});
