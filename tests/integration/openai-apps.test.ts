/**
 * The OpenAI Images API as apps call it: LibreChat's image tool and Open WebUI
 * with the bodies their sources build, the `openai` client's image stream, the
 * AI SDK with an output format, and the edit and variation calls the GPU
 * server cannot serve. Every image is decoded (sharp) and its format and size
 * checked; where no conversion is due, it is the GPU server's very bytes.
 */
import OpenAI, { APIError, BadRequestError, RateLimitError, toFile } from "openai";
import { createOpenAI } from "@ai-sdk/openai";
import { generateImage } from "ai";
import sharp from "sharp";
import { afterAll, beforeEach, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { call, directImage, eventually, readEvents } from "./harness";
import type { Gateway } from "./harness";

let jpegServer: Emulator;
let pngServer: Emulator;
/** In front of the JPEG server (the genuine server's default format). */
let gateway: Gateway;
/** In front of the PNG server. */
let pngGateway: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  [jpegServer, pngServer] = await Promise.all([startEmulator({ stepMs: 5, slots: 4 }), startEmulator({ stepMs: 5, slots: 4, imageFormat: "png" })]);
  [gateway, pngGateway] = await Promise.all([
    startFileGateway({ TEXT2IMAGE_SERVER_URL: jpegServer.url, SSE_KEEPALIVE_INTERVAL: "0.2" }),
    startFileGateway({ TEXT2IMAGE_SERVER_URL: pngServer.url }),
  ]);
});

afterAll(() => Promise.all([jpegServer.close(), pngServer.close()]));

beforeEach(() => {
  for (const server of [jpegServer, pngServer]) {
    server.reset();
    server.setStepMs(5);
    server.setFault(null);
  }
});

function client(url = gateway.url): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: "any", maxRetries: 0 });
}

async function decoded(base64: string | undefined): Promise<{ format: string | undefined; width: number | undefined; height: number | undefined; bytes: Buffer }> {
  const bytes = Buffer.from(base64 ?? "", "base64");
  const { format, width, height } = await sharp(bytes).metadata();
  return { format, width, height, bytes };
}

/** The server's own image for the seed it used last (its picture depends on prompt, size and seed only). */
async function serverImage(server: Emulator, prompt: string, width: number, height: number): Promise<Buffer> {
  const [seed] = server.stats().lastSeeds;
  const uri = await directImage(server.url, `{"prompt":${JSON.stringify(prompt)},"width":${width},"height":${height},"num_inference_steps":9,"seed":${seed}}`);
  return Buffer.from(uri.slice(uri.indexOf(",") + 1), "base64");
}

/**
 * LibreChat's image_gen_oai tool (api/app/clients/tools/structured/OpenAIImageTools.js):
 * gpt-image-1, its defaults, output_format from its imageOutputType, output_compression
 * only for webp and jpeg; it reads data[0].b64_json and labels it with its output_format.
 */
function libreChatBody(prompt: string, outputFormat: "png" | "jpeg" | "webp", outputCompression = 100): OpenAI.ImageGenerateParamsNonStreaming {
  return {
    model: "gpt-image-1",
    prompt,
    n: 1,
    background: "auto",
    output_format: outputFormat,
    output_compression: outputFormat === "webp" || outputFormat === "jpeg" ? outputCompression : undefined,
    quality: "auto",
    size: "auto",
  };
}

describe("LibreChat's image tool", () => {
  it.each(["png", "jpeg", "webp"] as const)("gets a %s of 1024x1024 as it asked, and the answer says so", async (format) => {
    const answer = await client().images.generate(libreChatBody("a harbour at dawn", format));
    expect(answer).toMatchObject({ output_format: format, size: "1024x1024", quality: "auto", background: "auto" });
    const image = await decoded(answer.data?.[0]?.b64_json);
    expect([image.format, image.width, image.height]).toEqual([format, 1024, 1024]);
    // The server makes JPEG: that one is passed on as it came, never encoded again.
    if (format === "jpeg") expect(image.bytes.equals(await serverImage(jpegServer, "a harbour at dawn", 1024, 1024))).toBe(true);
  });

  it("gets a smaller file for a lower output_compression", async () => {
    const sizes = [];
    for (const compression of [100, 20]) {
      const answer = await client().images.generate({ ...libreChatBody("a quiet street", "webp", compression), size: "512x512", seed: 7 } as OpenAI.ImageGenerateParamsNonStreaming);
      const image = await decoded(answer.data?.[0]?.b64_json);
      expect(image.format).toBe("webp");
      sizes.push(image.bytes.length);
    }
    expect(sizes[1]).toBeLessThan((sizes[0] ?? 0) * 0.8);
  });

  it("gets a PNG server's own bytes for png, and a JPEG made of them for jpeg", async () => {
    const png = await client(pngGateway.url).images.generate({ ...libreChatBody("a kite", "png"), size: "512x512" });
    const own = await decoded(png.data?.[0]?.b64_json);
    expect([own.format, own.width, own.height]).toEqual(["png", 512, 512]);
    expect(own.bytes.equals(await serverImage(pngServer, "a kite", 512, 512))).toBe(true);
    const jpeg = await client(pngGateway.url).images.generate({ ...libreChatBody("a kite", "jpeg", 80), size: "512x256" });
    expect(jpeg).toMatchObject({ output_format: "jpeg", size: "512x256" });
    const converted = await decoded(jpeg.data?.[0]?.b64_json);
    expect([converted.format, converted.width, converted.height]).toEqual(["jpeg", 512, 256]);
  });

  it("is refused a format, a compression or a partial count off OpenAI's rules with its 400 and param, and nothing reaches the GPU server", async () => {
    const refusals: [Record<string, unknown>, string][] = [
      [{ output_format: "gif" }, "output_format"],
      [{ output_format: "webp", output_compression: 101 }, "output_compression"],
      [{ output_format: "png", output_compression: 50 }, "output_compression"],
      [{ stream: true, partial_images: 4 }, "partial_images"],
      [{ stream: true, n: 2 }, "n"],
    ];
    for (const [fields, param] of refusals) {
      const refused = await client()
        .images.generate({ model: "gpt-image-1", prompt: "refused", ...fields } as unknown as OpenAI.ImageGenerateParamsNonStreaming)
        .then(() => undefined, (error: unknown) => error);
      expect(refused, JSON.stringify(fields)).toBeInstanceOf(BadRequestError);
      expect((refused as BadRequestError).param, JSON.stringify(fields)).toBe(param);
    }
    expect(jpegServer.stats().generateRequests).toBe(0);
  });
});

describe("an image by URL in another format", () => {
  it("is stored under its own hash, served as that format and cached like any other", async () => {
    const asked = { prompt: "a lantern", size: "256x256", seed: 11, response_format: "url" } as const;
    const [jpeg, webp] = await Promise.all([client().images.generate(asked), client().images.generate({ ...asked, output_format: "webp" })]);
    expect(webp.output_format).toBe("webp");
    const url = webp.data?.[0]?.url ?? "";
    expect(url).toMatch(/\/api\/images\/[0-9a-f]{64}\.webp$/);
    expect(url).not.toBe(jpeg.data?.[0]?.url);
    const served = await fetch(url);
    expect(served.headers.get("content-type")).toBe("image/webp");
    expect(served.headers.get("cache-control")).toContain("immutable");
    const image = await decoded(Buffer.from(await served.arrayBuffer()).toString("base64"));
    expect([image.format, image.width, image.height]).toEqual(["webp", 256, 256]);
    expect(served.headers.get("etag")).toContain(/([0-9a-f]{64})\.webp$/.exec(url)?.[1]);
  });
});

describe("Open WebUI (backend/open_webui/routers/images.py)", () => {
  // Its body: model (dall-e-2 when unset), prompt, n, size, response_format b64_json unless the model answers URLs, then IMAGES_OPENAI_API_PARAMS merged in.
  const openWebUi = (extra: Record<string, unknown> = {}) => ({ model: "dall-e-2", prompt: "a windmill", n: 1, size: "512x512", response_format: "b64_json", ...extra });

  it("gets the GPU server's image for its default body", async () => {
    const answer = await call(`${gateway.url}/v1/images/generations`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(openWebUi()) });
    expect(answer.status).toBe(200);
    const body = answer.body as { data: { b64_json: string }[]; output_format: string; size: string };
    expect(body).toMatchObject({ output_format: "jpeg", size: "512x512" });
    const image = await decoded(body.data[0]?.b64_json);
    expect(image.bytes.equals(await serverImage(jpegServer, "a windmill", 512, 512))).toBe(true);
  });

  it("gets a PNG, which it labels its b64_json as, with output_format in IMAGES_OPENAI_API_PARAMS", async () => {
    const answer = await call(`${gateway.url}/v1/images/generations`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(openWebUi({ output_format: "png" })) });
    const image = await decoded((answer.body as { data: { b64_json: string }[] }).data[0]?.b64_json);
    expect([image.format, image.width, image.height]).toEqual(["png", 512, 512]);
  });
});

describe("edits and variations", () => {
  it("are OpenAI's 400 naming what the GPU server lacks, never the GPU server's business", async () => {
    const image = await toFile(Buffer.from(await sharp({ create: { width: 16, height: 16, channels: 3, background: "#336699" } }).png().toBuffer()), "in.png", { type: "image/png" });
    const edit = await client().images.edit({ model: "gpt-image-1", image, prompt: "make it red" }).then(() => undefined, (error: unknown) => error);
    // eslint-disable-next-line @typescript-eslint/no-deprecated -- a DALL·E 2 call some apps still make: the door must answer it
    const variation = await client().images.createVariation({ image }).then(() => undefined, (error: unknown) => error);
    for (const [refused, path] of [[edit, "/v1/images/edits"], [variation, "/v1/images/variations"]] as const) {
      expect(refused).toBeInstanceOf(BadRequestError);
      expect(refused).toMatchObject({ status: 400, param: "image", code: "image_input_unsupported" });
      expect((refused as BadRequestError).message).toContain(`${path} needs an input image, and the GPU server behind this gateway takes none`);
    }
    expect(jpegServer.stats().generateRequests).toBe(0);
  });
});

describe("the openai client's image stream", () => {
  it("iterates to one image_generation.completed event with the image in the asked format", async () => {
    const stream = await client().images.generate({ model: "gpt-image-1", prompt: "a glass of water", size: "256x256", output_format: "png", stream: true, partial_images: 2 });
    const events: OpenAI.ImageGenStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    expect(events.map((event) => event.type)).toEqual(["image_generation.completed"]);
    const [completed] = events as [OpenAI.ImageGenCompletedEvent];
    expect(completed).toMatchObject({ output_format: "png", size: "256x256", quality: "auto", background: "auto", usage: { total_tokens: 0 } });
    expect(completed.created_at).toBeGreaterThan(Date.now() / 1000 - 60);
    const image = await decoded(completed.b64_json);
    expect([image.format, image.width, image.height]).toEqual(["png", 256, 256]);
  });

  it("keeps the connection alive with comments while the GPU works, then sends the server's JPEG as it came", async () => {
    jpegServer.setStepMs(100);
    const sentAt = performance.now();
    const response = await fetch(`${gateway.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-image-1", prompt: "a slow dawn", size: "256x256", stream: true }),
    });
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = await readEvents(response, sentAt);
    const data = events.filter((event) => event.data);
    expect(data.map((event) => event.data?.type)).toEqual(["image_generation.completed"]);
    expect(events.filter((event) => event.comment !== undefined && event.at < (data[0]?.at ?? 0)).length).toBeGreaterThanOrEqual(3);
    const image = await decoded(data[0]?.data?.b64_json as string);
    expect(image.bytes.equals(await serverImage(jpegServer, "a slow dawn", 256, 256))).toBe(true);
  });

  it("throws the GPU server's failure that comes after the stream opened", async () => {
    jpegServer.setFault({ kind: "status", status: 500, detail: "Generation failed: CUDA out of memory", latencyMs: 300 });
    const stream = await client().images.generate({ model: "gpt-image-1", prompt: "too big", size: "256x256", stream: true });
    const seen: unknown[] = [];
    const thrown = await (async () => {
      for await (const event of stream) seen.push(event);
    })().then(() => undefined, (error: unknown) => error);
    expect(seen).toEqual([]);
    expect(thrown).toBeInstanceOf(APIError);
    expect((thrown as APIError).message).toContain("Generation failed: CUDA out of memory");
    expect(thrown).toMatchObject({ type: "server_error", code: "upstream_status" });
  });

  it("throws a connection the GPU server cut mid-answer, and never sends that generation again", async () => {
    const stream = await client().images.generate({ model: "gpt-image-1", prompt: "cut [[fault:reset_mid_body]]", size: "256x256", stream: true });
    const thrown = await (async () => {
      for await (const event of stream) expect(event).toBeUndefined();
    })().then(() => undefined, (error: unknown) => error);
    expect(thrown).toBeInstanceOf(APIError);
    expect((thrown as APIError).message).toBe("Connection to the text-to-image server was lost");
    expect(jpegServer.stats().generateRequests).toBe(1);
  });

  it("refuses before the stream opens when the queue is full: the SDK raises RateLimitError", async ({ startGateway, onTestFinished }) => {
    const server = await startEmulator({ stepMs: 200, slots: 1 });
    onTestFinished(() => server.close());
    const small = await startGateway({ TEXT2IMAGE_SERVER_URL: server.url, MAX_CONCURRENT_REQUESTS: "1", MAX_QUEUE: "1" });
    const body = { model: "gpt-image-1", prompt: "one at a time", size: "256x256", stream: true } as const;
    const running = await client(small.url).images.generate(body);
    const waiting = await client(small.url).images.generate(body);
    const refused = await client(small.url).images.generate(body).then(() => undefined, (error: unknown) => error);
    expect(refused).toBeInstanceOf(RateLimitError);
    for (const stream of [running, waiting]) {
      const types = [];
      for await (const event of stream) types.push(event.type);
      expect(types).toEqual(["image_generation.completed"]);
    }
  });

  it("stops the generation when its reader leaves, as /api/generate-stream does: the slot stays held while the GPU still runs it", async () => {
    jpegServer.setStepMs(150);
    const stream = await client().images.generate({ model: "gpt-image-1", prompt: "left early", size: "256x256", stream: true });
    expect(await eventually(() => jpegServer.stats().work === 1)).toBe(true);
    stream.controller.abort();
    expect(await eventually(() => jpegServer.stats().aborted === 1, 1000), "the GPU server sees its request closed").toBe(true);
    const health = (await call(`${gateway.url}/api/health`)).body as { in_flight: number; orphaned: number };
    expect(health, "the genuine server goes on: its slot is held until it is seen done").toMatchObject({ in_flight: 1, orphaned: 1 });
    expect(await eventually(async () => ((await call(`${gateway.url}/api/health`)).body as { in_flight: number }).in_flight === 0, 5000)).toBe(true);
  });
});

describe("the AI SDK", () => {
  it("generateImage with providerOptions.openai.outputFormat gets that format, and the answer's size and format in its metadata", async () => {
    const provider = createOpenAI({ baseURL: `${gateway.url}/v1`, apiKey: "any" });
    const { image } = await generateImage({
      model: provider.image("gpt-image-1"),
      prompt: "a red bicycle",
      size: "512x256",
      providerOptions: { openai: { outputFormat: "webp", outputCompression: 70 } },
      maxRetries: 0,
    });
    expect(image.mediaType).toBe("image/webp");
    const decodedImage = await decoded(image.base64);
    expect([decodedImage.format, decodedImage.width, decodedImage.height]).toEqual(["webp", 512, 256]);
    expect(image.providerMetadata?.openai).toMatchObject({ outputFormat: "webp", size: "512x256", quality: "auto", background: "auto" });
  });
});
