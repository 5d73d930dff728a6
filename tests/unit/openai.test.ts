/** The OpenAI door's reading of a request and its error shape, in-process. */
import { describe, expect, it } from "vitest";
import { GatewayError, fail, openAiError } from "@/lib/errors";
import { parseImagesRequest } from "@/lib/openai";
import { SEED_MAX } from "@/lib/schemas";

const config = { maxImagesPerRequest: 4, sizeMultiple: 16 };
const parse = (body: Record<string, unknown>) => parseImagesRequest(body, config);

function refusal(body: Record<string, unknown>): { param: string | undefined; message: string } {
  try {
    parse(body);
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    return { param: error.param, message: error.message };
  }
  throw new Error("accepted");
}

describe("parseImagesRequest", () => {
  it("makes one request per image, 1024x1024 for auto, the gateway's defaults for the rest", () => {
    const { generations, format, model } = parse({ prompt: "a fox", n: 2, size: "auto", model: "dall-e-3", quality: "hd", style: "vivid", user: "u1" });
    expect(format).toBe("url");
    expect(model).toBe("dall-e-3");
    expect(generations).toEqual([
      { prompt: "a fox", negative_prompt: "", width: 1024, height: 1024, seed: -1, num_inference_steps: 9, guidance_scale: 0 },
      { prompt: "a fox", negative_prompt: "", width: 1024, height: 1024, seed: -1, num_inference_steps: 9, guidance_scale: 0 },
    ]);
  });

  it("reads WxH sizes and the extensions, a fixed seed counting up (past 2^64−1 it wraps)", () => {
    const [first, second] = parse({ prompt: "x", n: 2, size: "512x768", seed: 7, num_inference_steps: 6, negative_prompt: "blur" }).generations;
    expect(first).toMatchObject({ width: 512, height: 768, seed: 7, num_inference_steps: 6, negative_prompt: "blur" });
    expect(second?.seed).toBe(8);
    expect(parse({ prompt: "x", n: 2, seed: String(SEED_MAX) }).generations.map((request) => request.seed)).toEqual([SEED_MAX, 0]);
  });

  it("answers base64 by default for gpt-image and chatgpt-image models, as OpenAI does, and as asked otherwise", () => {
    expect(parse({ prompt: "x", model: "gpt-image-1" }).format).toBe("b64_json");
    expect(parse({ prompt: "x", model: "chatgpt-image-latest" }).format).toBe("b64_json");
    expect(parse({ prompt: "x", model: "gpt-image-1", response_format: "url" }).format).toBe("url");
    expect(parse({ prompt: "x", response_format: "b64_json" }).format).toBe("b64_json");
  });

  it("reads OpenAI's output fields: the format and its compression, a stream of one image, quality and background told back (auto unless asked)", () => {
    expect(parse({ prompt: "x", model: "gpt-image-1", output_format: "webp", output_compression: 40, quality: "high", background: "opaque" })).toMatchObject({
      format: "b64_json",
      outputFormat: "webp",
      compression: 40,
      quality: "high",
      background: "opaque",
      stream: false,
    });
    expect(parse({ prompt: "x", output_format: null, output_compression: null, quality: null, stream: null, partial_images: null })).toMatchObject({
      outputFormat: undefined,
      compression: undefined,
      quality: "auto",
      background: "auto",
      stream: false,
    });
    // A stream answers base64 whatever the model; partial_images 0 to 3 are taken (the GPU server sends no preview).
    expect(parse({ prompt: "x", model: "dall-e-3", stream: true, partial_images: 3 })).toMatchObject({ stream: true, format: "b64_json" });
    expect(parse({ prompt: "x", output_format: "jpeg", output_compression: 0 }).compression).toBe(0);
  });

  it("refuses what it cannot honour, naming the field", () => {
    expect(refusal({ prompt: "x", n: 5 })).toMatchObject({ param: "n", message: expect.stringContaining("1 to 4 (MAX_IMAGES_PER_REQUEST)") as unknown });
    expect(refusal({ prompt: "x", n: 1.5 }).param).toBe("n");
    expect(refusal({ prompt: "x", size: "big" }).param).toBe("size");
    expect(refusal({ prompt: "x", size: "1000x1024" })).toEqual({ param: "size", message: "size: width: Input should be a multiple of 16" });
    expect(refusal({ prompt: "x", response_format: "png" }).param).toBe("response_format");
    expect(refusal({ prompt: "x", stream: "yes" }).param).toBe("stream");
    expect(refusal({ prompt: "x", stream: true, n: 2 }).param).toBe("n");
    expect(refusal({ prompt: "x", stream: true, response_format: "url" }).param).toBe("response_format");
    for (const partial of [-1, 4, 1.5, "2"]) expect(refusal({ prompt: "x", stream: true, partial_images: partial }).param).toBe("partial_images");
    for (const format of ["gif", "jpg", "PNG", 1]) expect(refusal({ prompt: "x", output_format: format }).param).toBe("output_format");
    for (const compression of [-1, 101, 50.5, "80"]) expect(refusal({ prompt: "x", output_format: "webp", output_compression: compression }).param).toBe("output_compression");
    expect(refusal({ prompt: "x", output_format: "png", output_compression: 80 })).toEqual({
      param: "output_compression",
      message: 'output_compression: applies to "jpeg" and "webp" only, not to "png"',
    });
    expect(refusal({ prompt: "x", quality: 3 }).param).toBe("quality");
    expect(refusal({ prompt: "" })).toEqual({ param: "prompt", message: "prompt: String should have at least 1 character" });
    expect(refusal({ n: 1 }).param).toBe("prompt");
    expect(refusal({ prompt: "x", num_inference_steps: 50 }).param).toBe("num_inference_steps");
  });
});

describe("openAiError", () => {
  it("gives OpenAI's statuses and types, so its SDKs raise their typed errors", () => {
    const cases: [GatewayError, number, string, string][] = [
      [fail.invalidParameter("size", "bad"), 400, "invalid_request_error", "invalid_parameter"],
      [fail.invalidJson("oops"), 400, "invalid_request_error", "invalid_json"],
      [fail.payloadTooLarge(10), 400, "invalid_request_error", "payload_too_large"],
      [fail.apiKeyInvalid(), 401, "invalid_request_error", "invalid_api_key"],
      [fail.queueFull(), 429, "rate_limit_error", "queue_full"],
      [fail.queueTimeout(1000), 429, "rate_limit_error", "queue_timeout"],
      [fail.upstreamConnection(null), 502, "server_error", "upstream_transport"],
      [fail.shuttingDown(), 503, "server_error", "shutting_down"],
    ];
    for (const [error, status, type, code] of cases) {
      const answer = openAiError(error);
      expect([answer.status, answer.body.error.type, answer.body.error.code], error.code).toEqual([status, type, code]);
      expect(answer.body.error.message).toBe(error.message);
    }
    expect(openAiError(fail.invalidParameter("size", "bad")).body.error.param).toBe("size");
  });
});
