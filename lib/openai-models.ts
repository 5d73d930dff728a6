/**
 * The OpenAI API's doors besides image generation (lib/openai.ts): the one
 * model, listed and retrieved (some apps list models before they use one),
 * and the image-input endpoints the GPU server cannot serve.
 */
import "server-only";
import type { z } from "zod";
import type { OpenAIModel } from "./api-shapes";
import { fail } from "./errors";
import { json } from "./http";
import { registry } from "./registry";

/** POST /v1/images/edits and /v1/images/variations: OpenAI's 400, saying what the GPU server lacks (its body, an upload, is not read). */
export function refuseImageInput(request: Request): Response {
  throw fail.imageInputUnsupported(new URL(request.url).pathname);
}

/** When this process started, as the models' `created`. */
const STARTED_S = Math.floor(Date.now() / 1000 - process.uptime());

/** The one model, by IMAGE_MODEL_NAME, as OpenAI describes a model. */
function imageModel(): z.output<typeof OpenAIModel> {
  return { id: registry().config.imageModelName, object: "model", created: STARTED_S, owned_by: "text2image-gateway" };
}

/** GET /v1/models: the one model. */
export function listModels(): Response {
  return json({ object: "list", data: [imageModel()] });
}

/**
 * GET /v1/models/{model}: the model by its name, which holds a slash
 * (Tongyi-MAI/Z-Image-Turbo) that the SDKs send encoded, or not.
 */
export function retrieveModel(request: Request): Response {
  const model = imageModel();
  const encoded = new URL(request.url).pathname.slice("/v1/models/".length);
  let name: string;
  try {
    name = decodeURIComponent(encoded);
  } catch {
    name = encoded;
  }
  if (name !== model.id) throw fail.noSuchModel(name, model.id);
  return json(model);
}
