/** OpenAI's Images API under /v1, for its SDKs and the apps built on them, with the OpenAPI operations. */
import { OpenAIImagesRequest, OpenAIImagesResponse, OpenAIImageStreamEvent, OpenAIModel, OpenAIModelList } from "../api-shapes";
import { fail } from "../errors";
import { z } from "zod";
import { HEADERS, defaults, eventStream, json, jsonParseError, openAiCommonErrors, openAiErrorResponse } from "./entry";
import type { RouteEntry } from "./entry";

const MODEL = { id: "Tongyi-MAI/Z-Image-Turbo", object: "model", created: 1767225600, owned_by: "text2image-gateway" };

/** OpenAI's edits and variations: a 400 whatever is sent, as the GPU server takes no input image. */
function imageInputEntry(path: string, operationId: string, what: string) {
  return {
    path,
    access: "key",
    errors: "openai",
    operations: () => ({
      post: {
        operationId,
        summary: `OpenAI Images API: ${what} (not offered)`,
        description:
          "The GPU server makes images from a text prompt only and takes no input image, so this is OpenAI's 400 (`image_input_unsupported`, param `image`) whatever is sent; the body is not read.",
        tags: ["openai"],
        responses: {
          400: openAiErrorResponse(400, "No input image is taken here", { unsupported: ["Any request", fail.imageInputUnsupported(path)] }),
          ...openAiCommonErrors(["POST"]),
        },
      },
    }),
  } as const satisfies RouteEntry;
}

const IMAGE_REQUESTS = {
  url: ["An image by URL (the default)", { model: "dall-e-3", prompt: "a red fox in snow", size: "1024x1024" }],
  b64: ["Two images as base64, a fixed seed", { prompt: "a red fox in snow", n: 2, size: "512x512", response_format: "b64_json", seed: 42 }],
  libreChat: [
    "LibreChat's image tool: a WebP, as base64",
    { model: "gpt-image-1", prompt: "a red fox in snow", n: 1, background: "auto", output_format: "webp", output_compression: 90, quality: "auto", size: "auto" },
  ],
  stream: ["A stream of one PNG", { model: "gpt-image-1", prompt: "a red fox in snow", size: "512x512", output_format: "png", stream: true, partial_images: 2 }],
} as const;

const ANSWER = { created: 1767225600, background: "auto", quality: "auto" };

export const OPENAI_ROUTES = {
  openAiImages: {
    path: "/v1/images/generations",
    access: "key",
    errors: "openai",
    operations: () => ({
      post: {
        operationId: "createImages",
        summary: "OpenAI Images API: generate images",
        description:
          "For OpenAI's SDKs and the apps built on them, with `http(s)://<gateway>/v1` as their base URL. Each of the `n` images is one generation, admitted, limited and validated as `POST /api/generate`. Any model name is the gateway's one model. `output_format` converts the image only where the GPU server's format differs. `stream: true` answers OpenAI's image stream once the generation is admitted: keep-alive comments, then one `image_generation.completed` event (or an `error` event, which the SDKs throw). Errors take OpenAI's shape: bad input 400 (never reaching the GPU), a wrong key 401, a rate limit or a full queue 429 with `Retry-After`, GPU-server failures 502/503/504.",
        tags: ["openai"],
        requestBody: {
          required: true,
          content: {
            "application/json": {
              schema: OpenAIImagesRequest,
              examples: Object.fromEntries(Object.entries(IMAGE_REQUESTS).map(([key, [summary, value]]) => [key, { summary, value, "x-expected-status": 200 }])),
            },
          },
        },
        responses: {
          200: {
            description: "The images; with `stream: true`, OpenAI's image stream",
            content: {
              ...json("", OpenAIImagesResponse, {
                url: ["By URL", { ...ANSWER, data: [{ url: `https://gateway.example/api/images/${"9f2c1e0a4b7d3c6e".repeat(4)}.jpg` }], output_format: "jpeg", size: "1024x1024" }],
                b64: ["As base64 (shortened)", { ...ANSWER, data: [{ b64_json: "/9j/4AAQSkZJRgABAQ…" }, { b64_json: "/9j/4AAQSkZJRgABAQ…" }], output_format: "jpeg", size: "512x512" }],
              }).content,
              "text/event-stream": eventStream(OpenAIImageStreamEvent, {
                completed: [
                  "Keep-alive comments (not shown), then the image (shortened)",
                  [
                    {
                      type: "image_generation.completed",
                      b64_json: "iVBORw0KGgoAAAANSUhEUgAA…",
                      created_at: ANSWER.created,
                      size: "512x512",
                      quality: "auto",
                      background: "auto",
                      output_format: "png",
                      usage: { input_tokens: 0, input_tokens_details: { image_tokens: 0, text_tokens: 0 }, output_tokens: 0, total_tokens: 0 },
                    },
                  ],
                ],
              }),
            },
          },
          400: openAiErrorResponse(
            400,
            "Bad input: a field off the rules (`param` names it), a body that is no JSON object, `stream: true` with n > 1, more images than RATE_LIMIT_PER_MINUTE allows in a minute, a Host no image URL can be made of",
            {
              size: ["A size off the grid", fail.invalidParameter("size", "width: Input should be a multiple of 16")],
              outputFormat: ["An unknown output_format", fail.invalidParameter("output_format", 'must be "png", "jpeg" or "webp"')],
              compression: ["output_compression for a png", fail.invalidParameter("output_compression", 'applies to "jpeg" and "webp" only, not to "png"')],
              tooManyImages: ["n over the rate limit", fail.invalidParameter("n", "4 images are more than RATE_LIMIT_PER_MINUTE allows in a minute (3)")],
              stream: ["stream: true with n: 2", fail.invalidParameter("n", "a stream carries one image: ask n: 1, or leave stream out for n images in one answer")],
              notJson: ["Malformed JSON", fail.invalidJson(jsonParseError('{"prompt": "a red fox"'))],
              empty: ["Empty body", fail.invalidJson("the body is empty")],
              tooLarge: [`Over the default limit of ${defaults.maxBodyBytes} bytes (OpenAI has no 413)`, fail.payloadTooLarge(defaults.maxBodyBytes)],
              textPlain: ["Sent as text/plain (OpenAI has no 415)", fail.unsupportedMediaType("text/plain")],
            },
          ),
          429: openAiErrorResponse(
            429,
            "The queue is full, no slot came free in time, or the `n` images do not fit the key's rate limit now (nothing is taken or sent)",
            {
              queueFull: ["Queue full", fail.queueFull()],
              rateLimited: ["Over the rate limit", fail.rateLimited(10, 12, { "RateLimit-Limit": "10", "RateLimit-Remaining": "1" }, { asked: 2, left: 1 })],
            },
            HEADERS.retryAfter,
          ),
          502: openAiErrorResponse(502, "The GPU server's connection was lost, or it answered something the gateway cannot read", { lost: ["Connection lost", fail.upstreamConnection(null)] }),
          503: openAiErrorResponse(503, "The GPU server is unreachable, or the gateway is shutting down", { shuttingDown: ["Shutting down", fail.shuttingDown()] }, HEADERS.retryAfter),
          504: openAiErrorResponse(504, "No answer within REQUEST_TIMEOUT", { timeout: ["Timed out", fail.upstreamTimeout(defaults.requestTimeoutMs, null)] }),
          ...openAiCommonErrors(["POST"]),
        },
      },
    }),
  },
  openAiEdits: imageInputEntry("/v1/images/edits", "createImageEdit", "edit an image"),
  openAiVariations: imageInputEntry("/v1/images/variations", "createImageVariation", "vary an image"),
  openAiModels: {
    path: "/v1/models",
    access: "key",
    errors: "openai",
    operations: () => ({
      get: {
        operationId: "listModels",
        summary: "OpenAI API: the models",
        description:
          "The gateway's one image model, IMAGE_MODEL_NAME (some apps list models before they use one). A generation takes any model name and makes it with this one, so the names apps send as they are work: `dall-e-2` (Open WebUI's default when its model is unset), `dall-e-3`, `gpt-image-1` (LibreChat's), `gpt-image-2`; a gpt-image-* name answers base64 by default, as OpenAI does.",
        tags: ["openai"],
        responses: { 200: json("The models", OpenAIModelList, { one: ["The one model", { object: "list", data: [MODEL] }] }), ...openAiCommonErrors(["GET", "HEAD"]) },
      },
    }),
  },
  openAiModel: {
    path: "/v1/models/[...model]",
    access: "key",
    errors: "openai",
    operations: () => ({
      get: {
        operationId: "retrieveModel",
        summary: "OpenAI API: one model",
        description: "The gateway's one image model by its name, IMAGE_MODEL_NAME, whose slash may come percent-encoded (%2F) or not; any other name is OpenAI's 404, `model_not_found`.",
        tags: ["openai"],
        requestParams: { path: z.object({ model: z.string().meta({ description: "IMAGE_MODEL_NAME" }) }) },
        responses: {
          200: json("The model", OpenAIModel, { one: ["The one model", MODEL] }),
          404: openAiErrorResponse(404, "Not this gateway's model", { unknown: ["Another model", fail.noSuchModel("dall-e-3", MODEL.id)] }),
          ...openAiCommonErrors(["GET", "HEAD"]),
        },
      },
    }),
  },
} as const satisfies Record<string, RouteEntry>;
