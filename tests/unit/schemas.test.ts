import { describe, expect, it } from "vitest";
import { validateGenerateRequest } from "@/lib/schemas";

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
    [{}, "prompt", "missing", "Field required"],
    [{ prompt: "" }, "prompt", "string_too_short", "String should have at least 1 character"],
    [{ prompt: "p".repeat(2001) }, "prompt", "string_too_long", "String should have at most 2000 characters"],
    [{ prompt: 5 }, "prompt", "string_type", "Input should be a valid string"],
    [{ prompt: "x", negative_prompt: "n".repeat(2001) }, "negative_prompt", "string_too_long", "String should have at most 2000 characters"],
    [{ prompt: "x", negative_prompt: null }, "negative_prompt", "string_type", "Input should be a valid string"],
    [{ prompt: "x", height: 255 }, "height", "greater_than_equal", "Input should be greater than or equal to 256"],
    [{ prompt: "x", width: 2049 }, "width", "less_than_equal", "Input should be less than or equal to 2048"],
    [{ prompt: "x", width: 2 ** 60 }, "width", "less_than_equal", "Input should be less than or equal to 2048"],
    [{ prompt: "x", height: 512.5 }, "height", "int_from_float", "Input should be a valid integer, got a number with a fractional part"],
    [{ prompt: "x", height: "512" }, "height", "int_type", "Input should be a valid integer"],
    [{ prompt: "x", seed: "7" }, "seed", "int_type", "Input should be a valid integer"],
    [{ prompt: "x", seed: 1.5 }, "seed", "int_from_float", "Input should be a valid integer, got a number with a fractional part"],
    [{ prompt: "x", num_inference_steps: 5 }, "num_inference_steps", "greater_than_equal", "Input should be greater than or equal to 6"],
    [{ prompt: "x", num_inference_steps: 13 }, "num_inference_steps", "less_than_equal", "Input should be less than or equal to 12"],
    [{ prompt: "x", guidance_scale: "high" }, "guidance_scale", "float_type", "Input should be a valid number"],
  ])("rejects %j at %s with FastAPI's type and message", (body, field, type, msg) => {
    expect(detailOf(body)).toEqual([{ loc: ["body", field], type, msg }]);
  });

  it("reports every bad field, once each", () => {
    const detail = detailOf({ prompt: "", height: 1, width: 99999, num_inference_steps: 0.5 });
    expect(detail.map((d) => d.loc[1])).toEqual(["prompt", "height", "width", "num_inference_steps"]);
  });
});
