/**
 * The OpenAI Images API over the one pipeline, so OpenAI's SDKs and the apps
 * built on them (Open WebUI, LibreChat, n8n, the AI SDK's generateImage) can
 * use a self-hosted GPU (the models and the refused image-input endpoints:
 * lib/openai-models.ts). Errors take OpenAI's shape (lib/errors.ts openAiErrorResponse).
 */
import "server-only";
import type { Config } from "./config";
import { openAIImageOptions } from "./api-shapes";
import { GatewayError, asGatewayError, fail, openAiError } from "./errors";
import { followClient } from "./doors";
import { byteLength, readJsonObject, streamedJson } from "./http";
import { parseJsonObject } from "./json-object";
import type { RequestContext } from "./http";
import { outputOf } from "./job-doors";
import type { RequestRecord } from "./observe/request";
import { Generation } from "./pipeline";
import type { GenerationObserver } from "./pipeline";
import { JsonNumber } from "./pydantic";
import { registry } from "./registry";
import { SEED_MAX, requestJson, seedValue, validateGenerateRequest } from "./schemas";
import type { GenerateRequest } from "./schemas";
import { jobOwner, takeRateLimit } from "./security";
import { EventStream } from "./sse";
import { answerDataUri, answerFormat, answerImage, convertImage } from "./upstream/image";
import type { AnswerImage, OutputFormat } from "./upstream/image";
import { topLevelNumbers } from "./upstream/lean-json";

type ImagesRequest = ReturnType<typeof parseImagesRequest>;

const SIZE = /^(\d{1,5})x(\d{1,5})$/;
/** The gateway's own fields, taken as extensions with /api/generate's rules. */
const EXTENSIONS = ["negative_prompt", "seed", "num_inference_steps", "guidance_scale"] as const;
/** OpenAI's image models that answer base64 unless asked otherwise; DALL·E (and any other name) answers a URL. */
const BASE64_MODELS = /^(?:gpt-image-|chatgpt-image-)/;

function plain(value: unknown): unknown {
  return value instanceof JsonNumber ? value.value : value;
}

/** OpenAI's fields' schema for a MAX_IMAGES_PER_REQUEST, made once. */
const optionSchemas = new Map<number, ReturnType<typeof openAIImageOptions>>();

/**
 * The OpenAI request as the gateway's generations. OpenAI's own fields are
 * read with their documented schema (lib/api-shapes.ts), the first refusal a
 * 400 naming its field; the gateway's extensions with /api/generate's rules.
 * `style`, `user`, `moderation` and the rest are accepted and left: the GPU
 * server has no such settings. Model names are any: the one model makes them all.
 */
export function parseImagesRequest(body: Record<string, unknown>, config: Pick<Config, "maxImagesPerRequest" | "sizeMultiple">) {
  let schema = optionSchemas.get(config.maxImagesPerRequest);
  if (!schema) optionSchemas.set(config.maxImagesPerRequest, (schema = openAIImageOptions(config.maxImagesPerRequest)));
  const read = schema.safeParse(Object.fromEntries(Object.keys(schema.shape).map((name) => [name, plain(body[name])])));
  if (!read.success) {
    const [issue] = read.error.issues;
    throw fail.invalidParameter(String(issue?.path[0]), issue?.message ?? "is not valid");
  }
  const { model, stream, response_format, output_format: outputFormat, output_compression: compression } = read.data;
  const n = read.data.n ?? 1;
  // OpenAI's completed event has no index to tell n images apart.
  if (stream && n > 1) throw fail.invalidParameter("n", "a stream carries one image: ask n: 1, or leave stream out for n images in one answer");
  const size = read.data.size ?? "auto";
  // "auto" (and none) is OpenAI's square.
  const [, width, height] = size === "auto" ? [size, 1024, 1024] : (SIZE.exec(size) ?? []);
  if (width === undefined) throw fail.invalidParameter("size", 'must be "WIDTHxHEIGHT" (such as "1024x1024") or "auto"');
  const format = response_format ?? (stream || (model != null && BASE64_MODELS.test(model)) ? "b64_json" : "url");
  if (stream && format === "url") throw fail.invalidParameter("response_format", 'a stream sends the image as b64_json: leave response_format out, or ask "b64_json"');
  if (compression != null && outputFormat === "png") throw fail.invalidParameter("output_compression", 'applies to "jpeg" and "webp" only, not to "png"');

  const fields: Record<string, unknown> = { prompt: body.prompt, width, height };
  for (const name of EXTENSIONS) if (body[name] !== undefined) fields[name] = body[name];
  const result = validateGenerateRequest(fields, { sizeMultiple: config.sizeMultiple });
  if (!result.ok) {
    const [first] = result.detail;
    const field = String(first?.loc.at(-1) ?? "prompt");
    // The size is one field here: its width and height are the gateway's.
    const param = field === "width" || field === "height" ? "size" : field;
    const why = first?.msg ?? "is not valid";
    throw fail.invalidParameter(param, param === field ? why : `${field}: ${why}`);
  }
  const base = result.data;
  const generations = Array.from({ length: n }, (_, i) =>
    base.seed === -1 ? base : { ...base, seed: seedValue((BigInt(base.seed) + BigInt(i)) % (SEED_MAX + 1n)) },
  );
  return {
    /** One request per image, the seed counting up from a fixed one (-1 stays -1: the server picks each). */
    generations,
    format,
    model: model ?? undefined,
    /** OpenAI's image stream: one `image_generation.completed` event (n is 1). */
    stream: stream ?? false,
    /** The image's format as asked: converted to it only where the GPU server's differs. */
    outputFormat: outputFormat ?? undefined,
    /** jpeg and webp quality for a conversion (OpenAI's output_compression). */
    compression: compression ?? undefined,
    /** As asked, or "auto": told back in the answer, as OpenAI does; the GPU server has no such settings. */
    quality: read.data.quality ?? "auto",
    background: read.data.background ?? "auto",
  };
}

/** POST /v1/images/generations: `n` images of the caller's rate limit, then their generations (see `generateAll`), or one image's stream. */
export async function generateImages(request: Request, context: RequestContext): Promise<Response> {
  const gateway = registry();
  const { config } = gateway;
  const body = await readJsonObject(request, { maxBytes: config.maxBodyBytes, timeoutMs: config.bodyTimeoutMs, signal: request.signal });
  const asked = parseImagesRequest(body, config);
  const { generations, format, model } = asked;
  if (format === "url" && !config.jobs) {
    throw fail.invalidParameter("response_format", '"url" needs the gateway\'s image store, which is off here (JOBS=false): ask for "b64_json"');
  }
  // Where the URLs will point is known, or refused, before any GPU time is spent on them.
  const base = format === "url" ? (config.publicBaseUrl ?? origin(request)) : "";
  const caller = context.caller ?? "anonymous";
  const { owner } = jobOwner(request, caller);
  context.headers.push(...(await takeRateLimit(caller, generations.length)));
  context.record.note({ model, images: generations.length, response_format: format, output_format: asked.outputFormat, stream: asked.stream || undefined });
  if (asked.stream) return streamImage(request, context, asked);
  const created = Math.floor(Date.now() / 1000);
  const images = await Promise.all((await generateAll(generations, followClient(request.signal, context).stop, context)).map((json) => delivered(json, asked)));
  const head = JSON.stringify({ created, background: asked.background, output_format: images[0]?.format, quality: asked.quality, size: sizeOf(images[0], generations[0]) });
  const chunks: Buffer[] = [Buffer.from(`${head.slice(0, -1)},"data":[`)];
  for (const [i, image] of images.entries()) {
    if (i > 0) chunks.push(Buffer.from(","));
    if (format === "b64_json") chunks.push(Buffer.from('{"b64_json":"'), base64(image), Buffer.from('"}'));
    else chunks.push(Buffer.from(JSON.stringify({ url: base + (await imagePath(owner, generations[i] as GenerateRequest, image)) })));
  }
  chunks.push(Buffer.from("]}"));
  context.record.sent(byteLength(chunks));
  return streamedJson(chunks);
}

/** No tokens are counted here; OpenAI's stream events carry the field, so it is told as none. */
const NO_USAGE = { input_tokens: 0, input_tokens_details: { image_tokens: 0, text_tokens: 0 }, output_tokens: 0, total_tokens: 0 };

/**
 * `stream: true`: OpenAI's image stream over one generation. It opens (a 200)
 * once the generation is admitted, waiting in line or sent: until then a
 * failure is the usual JSON error, which the SDKs raise as typed errors. Then
 * keep-alive comments while the GPU works, and one `image_generation.completed`
 * with the image, or an `error` event the SDKs throw. The GPU server sends no
 * preview, so no `image_generation.partial_image` is sent, whatever
 * `partial_images` asks (OpenAI's spec lets the final image come first).
 * The client leaving stops the generation as on /api/generate-stream.
 */
async function streamImage(request: Request, context: RequestContext, asked: ImagesRequest): Promise<Response> {
  const client = followClient(request.signal, context);
  const events = new EventStream(registry().config.sseKeepAliveMs, client.gone);
  const { promise: opened, resolve: open }: PromiseWithResolvers<void> = Promise.withResolvers();
  const answer = generateAll(asked.generations, client.stop, context, open);
  try {
    await Promise.race([answer, opened]);
  } catch (error) {
    events.end();
    throw error;
  }
  void completeStream(answer, events, asked, context.record).finally(context.record.hold());
  const response = events.response();
  events.comment("generating");
  return response;
}

/** The stream's one event: the image in the asked format, or the failure in OpenAI's error shape. */
async function completeStream(answer: Promise<Buffer[]>, events: EventStream, asked: ImagesRequest, record: RequestRecord): Promise<void> {
  try {
    const [json] = await answer;
    const image = await delivered(json as Buffer, asked);
    const fields = JSON.stringify({
      created_at: Math.floor(Date.now() / 1000),
      size: sizeOf(image, asked.generations[0]),
      quality: asked.quality,
      background: asked.background,
      output_format: image.format,
      usage: NO_USAGE,
    });
    const event = [Buffer.from('event: image_generation.completed\ndata: {"type":"image_generation.completed","b64_json":"'), base64(image), Buffer.from(`",${fields.slice(1)}\n\n`)];
    for (const chunk of event) events.write(chunk);
    record.sent(byteLength(event));
  } catch (error) {
    record.failed(error);
    events.write(Buffer.from(`event: error\ndata: ${JSON.stringify({ type: "error", ...openAiError(asGatewayError(error)).body })}\n\n`));
  } finally {
    events.end();
  }
}

/** One image as delivered: the GPU server's answer, and, where the asked format differs from its own, the image converted (decoded only then). */
interface Delivered {
  json: Buffer;
  converted: AnswerImage | undefined;
  format: OutputFormat | undefined;
}

async function delivered(json: Buffer, asked: Pick<ImagesRequest, "outputFormat" | "compression">): Promise<Delivered> {
  const format = answerFormat(json);
  if (asked.outputFormat === undefined || asked.outputFormat === format) return { json, converted: undefined, format };
  try {
    return { json, converted: await convertImage(answerImage(json), asked.outputFormat, asked.compression), format: asked.outputFormat };
  } catch (error) {
    throw fail.upstreamBadResponse(`its image could not be read to make a ${asked.outputFormat} of it`, error);
  }
}

/** The image as base64: the GPU server's own, a view of its answer, or the converted one's. */
function base64(image: Delivered): Buffer {
  return image.converted ? Buffer.from(image.converted.bytes.toString("base64"), "latin1") : answerDataUri(image.json).base64;
}

/** The size as generated ("WIDTHxHEIGHT"), as the GPU server told it, else as asked. */
function sizeOf(image: Delivered | undefined, params: GenerateRequest | undefined): string {
  const numbers = new Map(image ? topLevelNumbers(image.json) : []);
  return `${numbers.get("width") ?? params?.width}x${numbers.get("height") ?? params?.height}`;
}

/**
 * The n generations of one request, each admitted as any other. They ask for
 * their slots one after another, so the request holds at most one place in
 * the queue (its siblings never crowd it, or others, out); one the queue has
 * no room for waits while a sibling runs, as the place that frees is the
 * request's own. One image failing fails them all, as OpenAI answers: the
 * others stop as if their client had left, by `stop`, which follows it (the GPU
 * server is not blamed, and what it still runs keeps its slot). The record times the request once, its
 * queue wait to the first slot and its upstream time to the last answer.
 * `onAdmitted` hears that the request is in line or sent (no longer refused at the door).
 */
async function generateAll(generations: readonly GenerateRequest[], stop: AbortController, context: RequestContext, onAdmitted?: () => void): Promise<Buffer[]> {
  const gateway = registry();
  const queued = context.record.begin("queue");
  let upstream: (() => void) | undefined;
  /** The siblings with a slot, until they end: one of them ending frees a slot. */
  const generating = new Set<Promise<void>>();
  let failure: unknown;

  const one = async (params: GenerateRequest, myTurn: Promise<void>, passTurn: () => void): Promise<Buffer> => {
    const { promise: end, resolve: ended }: PromiseWithResolvers<void> = Promise.withResolvers();
    const admitted = () => {
      onAdmitted?.();
      queued();
      upstream ??= context.record.begin("upstream");
      generating.add(end);
      passTurn();
    };
    const generation = new Generation(gateway, stop.signal, siblingObserver(context.record, admitted));
    context.afterResponse(() => {
      generation.close();
    });
    try {
      await generation.accept(() => Promise.resolve(parseJsonObject(Buffer.from(requestJson(params)))));
      await myTurn;
      for (;;) {
        try {
          const answer = await generation.image(onAdmitted);
          return answer.length === 1 ? (answer[0] as Buffer) : Buffer.concat(answer);
        } catch (error) {
          // No room in the queue while a sibling runs: its slot comes free for this one.
          if (!(error instanceof GatewayError && error.code === "queue_full") || generating.size === 0) throw error;
          await Promise.race(generating);
        }
      }
    } catch (error) {
      failure ??= error;
      stop.abort(fail.clientClosed("another image of the request failed"));
      throw error;
    } finally {
      generating.delete(end);
      ended();
      passTurn();
    }
  };

  let turn: Promise<void> = Promise.resolve();
  const images = generations.map((params) => {
    const { promise: next, resolve: passTurn }: PromiseWithResolvers<void> = Promise.withResolvers();
    const image = one(params, turn, passTurn);
    turn = next;
    return image;
  });
  try {
    return await Promise.all(images);
  } catch {
    // The first failure, not a sibling's stop that may have settled first.
    throw failure;
  } finally {
    queued();
    upstream?.();
  }
}

/** What a sibling image tells the request's record: all but its own timings, which the request keeps as one. */
function siblingObserver(record: RequestRecord, admitted: () => void): GenerationObserver {
  return {
    generating: record.generating.bind(record),
    begin: (phase) => {
      if (phase === "upstream") admitted();
      return () => undefined;
    },
    upstreamContext: record.upstreamContext.bind(record),
    failedWith: record.failedWith.bind(record),
  };
}

/** The image kept as a finished job of the caller's (so for JOB_TTL, and in its history): its path, signed with keys. */
async function imagePath(owner: string, params: GenerateRequest, image: Delivered): Promise<string> {
  const job = await registry().jobs.keep(owner, params, image.converted ?? answerImage(image.json));
  return outputOf(job)?.image_url ?? "";
}

/** A host as a URL may carry it: a DNS name or an IPv4 address, or a bracketed IPv6 one, and a port. */
const HOST = /^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * The origin the client used, for image URLs when PUBLIC_BASE_URL is unset
 * (Next's request.url says localhost): behind trusted proxies (TRUST_PROXY)
 * the forwarded host and scheme, else the Host. A host that is no
 * host[:port] is a 400: it would come back in the answer's URLs.
 */
function origin(request: Request): string {
  const url = new URL(request.url);
  const forwarded = registry().config.trustedProxyHops > 0;
  const first = (name: string) => (forwarded ? request.headers.get(name)?.split(",")[0]?.trim() || undefined : undefined);
  const forwardedHost = first("x-forwarded-host");
  const [name, host] = forwardedHost === undefined ? ["Host", request.headers.get("host") ?? url.host] : ["X-Forwarded-Host", forwardedHost];
  if (!HOST.test(host)) throw fail.invalidHeader(name, "is not a valid host[:port], so no image URL can be made from it (PUBLIC_BASE_URL sets one)");
  const proto = first("x-forwarded-proto")?.toLowerCase();
  const scheme = proto === "http" || proto === "https" ? proto : url.protocol.slice(0, -1);
  return `${scheme}://${host}`;
}
