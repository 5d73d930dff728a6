/**
 * The OpenAI Images API over the one pipeline, so OpenAI's SDKs and the apps
 * built on them (Open WebUI, LibreChat, n8n, the AI SDK's generateImage) can
 * use a self-hosted GPU: POST /v1/images/generations makes `n` generations of
 * the gateway's one model, each admitted like any other, and answers them as
 * base64 or by URL in the image store; GET /v1/models names that model.
 * Errors take OpenAI's shape (lib/errors.ts openAiErrorResponse).
 */
import "server-only";
import type { Config } from "./config";
import { GatewayError, fail } from "./errors";
import { parseJsonObject, readJsonObject, streamedJson } from "./http";
import type { RequestContext } from "./http";
import { outputOf } from "./jobs/doors";
import { Generation } from "./pipeline";
import { JsonNumber } from "./pydantic";
import { registry } from "./registry";
import { SEED_MAX, requestJson, seedValue, validateGenerateRequest } from "./schemas";
import type { GenerateRequest } from "./schemas";
import { plainStringSpan } from "./upstream/lean-json";

export type ImageFormat = "url" | "b64_json";

export interface ImagesRequest {
  /** One request per image, the seed counting up from a fixed one (-1 stays -1: the server picks each). */
  generations: GenerateRequest[];
  format: ImageFormat;
  model: string | undefined;
}

/** `size: "auto"` (and none) is OpenAI's square. */
const AUTO_SIZE = { width: 1024, height: 1024 };
const SIZE = /^(\d{1,5})x(\d{1,5})$/;
/** The gateway's own fields, taken as extensions with /api/generate's rules. */
const EXTENSIONS = ["negative_prompt", "seed", "num_inference_steps", "guidance_scale"] as const;
/** OpenAI's image models that answer base64 unless asked otherwise; DALL·E (and any other name) answers a URL. */
const BASE64_MODELS = /^(?:gpt-image-|chatgpt-image-)/;

function plain(value: unknown): unknown {
  return value instanceof JsonNumber ? value.value : value;
}

/**
 * The OpenAI request as the gateway's generations. `quality`, `style`,
 * `user`, `output_format` and the rest are accepted and left: the GPU server
 * has no such settings (its format is its own).
 */
export function parseImagesRequest(body: Record<string, unknown>, config: Pick<Config, "maxImagesPerRequest" | "sizeMultiple">): ImagesRequest {
  if (body.stream === true) throw fail.invalidParameter("stream", "streaming is not offered by this gateway: leave stream out, or false");
  const model = body.model ?? undefined;
  if (model !== undefined && typeof model !== "string") throw fail.invalidParameter("model", "must be a string");
  const n = plain(body.n) ?? 1;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > config.maxImagesPerRequest) {
    throw fail.invalidParameter("n", `must be a whole number from 1 to ${config.maxImagesPerRequest} (MAX_IMAGES_PER_REQUEST)`);
  }
  const size = body.size ?? "auto";
  const sized = size === "auto" ? AUTO_SIZE : typeof size === "string" ? SIZE.exec(size) : null;
  if (!sized) throw fail.invalidParameter("size", 'must be "WIDTHxHEIGHT" (such as "1024x1024") or "auto"');
  const format = body.response_format ?? (typeof model === "string" && BASE64_MODELS.test(model) ? "b64_json" : "url");
  if (format !== "url" && format !== "b64_json") throw fail.invalidParameter("response_format", 'must be "url" or "b64_json"');

  const fields: Record<string, unknown> = {
    prompt: body.prompt,
    width: Array.isArray(sized) ? sized[1] : sized.width,
    height: Array.isArray(sized) ? sized[2] : sized.height,
  };
  for (const name of EXTENSIONS) if (body[name] !== undefined) fields[name] = body[name];
  const result = validateGenerateRequest(fields, { sizeMultiple: config.sizeMultiple });
  if (!result.ok) {
    const [first] = result.detail;
    const field = String(first?.loc.at(-1) ?? "prompt");
    // The size is one field here: its width and height are the gateway's.
    const param = field === "width" || field === "height" ? "size" : field;
    throw fail.invalidParameter(param, param === field ? (first?.msg ?? "is not valid") : `${field}: ${first?.msg ?? "is not valid"}`);
  }
  const base = result.data;
  const generations = Array.from({ length: n }, (_, i) =>
    base.seed === -1 ? base : { ...base, seed: seedValue((BigInt(base.seed) + BigInt(i)) % (SEED_MAX + 1n)) },
  );
  return { generations, format: format, model: typeof model === "string" ? model : undefined };
}

/** POST /v1/images/generations */
export async function generateImages(request: Request, context: RequestContext): Promise<Response> {
  const gateway = registry();
  const { config } = gateway;
  const body = await readJsonObject(request, { maxBytes: config.maxBodyBytes, timeoutMs: config.bodyTimeoutMs, signal: request.signal });
  const { generations, format, model } = parseImagesRequest(body, config);
  if (format === "url" && !config.jobs) {
    throw fail.invalidParameter("response_format", '"url" needs the gateway\'s image store, which is off here (JOBS=false): ask for "b64_json"');
  }
  context.record.note({ model, images: generations.length, response_format: format });
  // One image failing fails them all (as OpenAI answers): the others stop, as they do when the client leaves.
  const stop = new AbortController();
  const onClientGone = () => {
    stop.abort(fail.clientClosed(request.signal.reason));
  };
  request.signal.addEventListener("abort", onClientGone, { once: true });
  context.afterResponse(() => {
    request.signal.removeEventListener("abort", onClientGone);
  });
  const created = Math.floor(Date.now() / 1000);
  const answers = await Promise.all(
    generations.map(async (params) => {
      const generation = new Generation(gateway, stop.signal, context.record);
      context.afterResponse(() => {
        generation.close();
      });
      try {
        await generation.accept(() => Promise.resolve(parseJsonObject(Buffer.from(requestJson(params)))));
        const answer = await generation.image();
        return answer.length === 1 ? (answer[0] as Buffer) : Buffer.concat(answer);
      } catch (error) {
        stop.abort(error instanceof GatewayError ? error : fail.internal(error));
        throw error;
      }
    }),
  );
  const chunks: Buffer[] = [Buffer.from(`{"created":${created},"data":[`)];
  for (const [i, json] of answers.entries()) {
    if (i > 0) chunks.push(Buffer.from(","));
    if (format === "b64_json") chunks.push(Buffer.from('{"b64_json":"'), base64Of(json), Buffer.from('"}'));
    else chunks.push(Buffer.from(JSON.stringify({ url: imageUrl(request, context, generations[i] as GenerateRequest, json) })));
  }
  chunks.push(Buffer.from("]}"));
  context.record.sent(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  return streamedJson(chunks);
}

/** The image's base64 as the GPU server wrote it, its data URI's prefix cut: a view, never decoded and encoded again. */
function base64Of(json: Buffer): Buffer {
  const span = plainStringSpan(json, "image_base64");
  if (span) {
    const comma = json.indexOf(",", span[0]);
    const start = comma >= 0 && comma < span[1] && json.toString("latin1", span[0], span[0] + 5) === "data:" ? comma + 1 : span[0];
    return json.subarray(start, span[1]);
  }
  // A string with escapes in it (no GPU server writes one): decoded, then its base64 again.
  const uri = String((JSON.parse(json.toString("utf8")) as { image_base64?: unknown }).image_base64);
  return Buffer.from(uri.startsWith("data:") ? uri.slice(uri.indexOf(",") + 1) : uri);
}

/** The image kept as a finished job of the caller's (so for JOB_TTL, and in its history), by its absolute URL. */
function imageUrl(request: Request, context: RequestContext, params: GenerateRequest, json: Buffer): string {
  const job = registry().jobs.keep(context.caller ?? "anonymous", params, json);
  return `${registry().config.publicBaseUrl ?? origin(request)}${outputOf(job)?.image_url ?? ""}`;
}

/**
 * The origin the client used (Next's request.url says localhost): its Host,
 * or behind trusted proxies (TRUST_PROXY) the forwarded host and scheme.
 */
function origin(request: Request): string {
  const url = new URL(request.url);
  const forwarded = registry().config.trustedProxyHops > 0;
  const first = (name: string) => request.headers.get(name)?.split(",")[0]?.trim() || undefined;
  const host = (forwarded ? first("x-forwarded-host") : undefined) ?? request.headers.get("host") ?? url.host;
  const scheme = (forwarded ? first("x-forwarded-proto") : undefined) ?? url.protocol.slice(0, -1);
  return `${scheme}://${host}`;
}

/** When this process started, as the models' `created`. */
const STARTED_S = Math.floor(Date.now() / 1000 - process.uptime());

/** The one model, by IMAGE_MODEL_NAME, as OpenAI describes a model. */
function imageModel(): { id: string; object: "model"; created: number; owned_by: string } {
  return { id: registry().config.imageModelName, object: "model", created: STARTED_S, owned_by: "text2image-gateway" };
}

/** GET /v1/models: the one model (some apps list models before they use one). */
export function listModels(): Response {
  return Response.json({ object: "list", data: [imageModel()] });
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
  return Response.json(model);
}
