/**
 * The OpenAI Images API as its users reach it: the official `openai` client
 * and the AI SDK's generateImage, configured with the gateway's /v1 as their
 * base URL, against the built gateway and the emulator. Each image is
 * decoded, its size checked, and compared byte for byte with the one the
 * emulator makes for the same seed.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createOpenAI } from "@ai-sdk/openai";
import { generateImage } from "ai";
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { directImage, startGateway } from "./harness";
import type { Gateway } from "./harness";

const KEY = "openai-test-key-0123456789";
let emulator: Emulator;
let gateway: Gateway;
let keyed: Gateway;
let dataDir: string;

beforeAll(async () => {
  emulator = await startEmulator({ stepMs: 10, slots: 8 });
  dataDir = mkdtempSync(path.join(tmpdir(), "openai-it-"));
  [gateway, keyed] = await Promise.all([
    startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, DATA_DIR: path.join(dataDir, "open"), MAX_CONCURRENT_REQUESTS: "2", MAX_QUEUE: "1" }),
    startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, DATA_DIR: path.join(dataDir, "keyed"), GATEWAY_API_KEYS: KEY }),
  ]);
});

afterAll(async () => {
  await Promise.all([gateway.stop(), keyed.stop()]);
  await emulator.close();
  rmSync(dataDir, { recursive: true, force: true });
});

beforeEach(() => {
  emulator.reset();
  emulator.setStepMs(10);
});

function client(baseURL = `${gateway.url}/v1`, apiKey = "anything"): OpenAI {
  return new OpenAI({ baseURL, apiKey, maxRetries: 0 });
}

/** A baseline JPEG's width and height, from its SOF0 segment. */
function jpegSize(jpeg: Buffer): [number, number] {
  expect([jpeg[0], jpeg[1]]).toEqual([0xff, 0xd8]);
  const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
  return [jpeg.readUInt16BE(sof + 7), jpeg.readUInt16BE(sof + 5)];
}

/** The emulator's own image for this prompt, size and seed (its picture depends on nothing else). */
async function emulatorImage(prompt: string, width: number, height: number, seed: string): Promise<Buffer> {
  const body = `{"prompt":${JSON.stringify(prompt)},"width":${width},"height":${height},"num_inference_steps":9,"seed":${seed}}`;
  const uri = await directImage(emulator.url, body);
  return Buffer.from(uri.slice(uri.indexOf(",") + 1), "base64");
}

describe("the openai client", () => {
  it("gets b64_json images of the asked size, the GPU server's bytes", async () => {
    // eslint-disable-next-line @typescript-eslint/no-deprecated -- the format DALL·E clients ask for, which the gateway answers
    const answer = await client().images.generate({ model: "dall-e-3", prompt: "a lighthouse at dusk", size: "512x256", response_format: "b64_json" });
    expect(answer.created).toBeGreaterThan(Date.now() / 1000 - 60);
    const image = Buffer.from(answer.data?.[0]?.b64_json ?? "", "base64");
    expect(jpegSize(image)).toEqual([512, 256]);
    const [seed] = emulator.stats().lastSeeds;
    expect(image).toEqual(await emulatorImage("a lighthouse at dusk", 512, 256, seed ?? ""));
  });

  it("gets n: 2 images by URL (the default), absolute, each its own seed, served by the gateway", async () => {
    const answer = await client().images.generate({ prompt: "two foxes", n: 2, size: "256x256" });
    expect(answer.data).toHaveLength(2);
    const seeds = emulator.stats().lastSeeds;
    expect(new Set(seeds).size).toBe(2);
    const images = await Promise.all(
      (answer.data ?? []).map(async ({ url }) => {
        expect(url).toMatch(new RegExp(`^${gateway.url}/api/images/[0-9a-f]{64}\\.jpg$`));
        return Buffer.from(await (await fetch(url ?? "")).arrayBuffer());
      }),
    );
    for (const image of images) expect(jpegSize(image)).toEqual([256, 256]);
    const expected = await Promise.all(seeds.map((seed) => emulatorImage("two foxes", 256, 256, seed)));
    expect(new Set(images.map((image) => image.toString("base64")))).toEqual(new Set(expected.map((image) => image.toString("base64"))));
  });

  it("takes the gateway's own fields as extensions: a fixed seed counts up over n", async () => {
    const params = { prompt: "a seeded pair", n: 2, size: "256x256", response_format: "b64_json", seed: 41, num_inference_steps: 6 };
    const answer = await client().images.generate(params as OpenAI.ImageGenerateParamsNonStreaming);
    expect(emulator.stats().lastBodies).toEqual(
      expect.arrayContaining([expect.objectContaining({ seed: 41, num_inference_steps: 6 }), expect.objectContaining({ seed: 42, num_inference_steps: 6 })]),
    );
    expect(answer.data).toHaveLength(2);
  });

  it("raises BadRequestError for a size off the gateway's rules, which never reaches the GPU server", async () => {
    const error: unknown = await client()
      .images.generate({ prompt: "a bad size", size: "1000x1000" })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({ status: 400, type: "invalid_request_error", param: "size" });
    expect((error as Error).message).toMatch(/multiple of 16/);
    const stream: unknown = await client()
      .images.generate({ prompt: "a stream", stream: true } as unknown as OpenAI.ImageGenerateParamsNonStreaming)
      .catch((caught: unknown) => caught);
    expect(stream).toMatchObject({ status: 400, param: "stream" });
    expect(emulator.stats().generateRequests).toBe(0);
  });

  it("raises AuthenticationError for a wrong key, and works with the right one", async () => {
    const error: unknown = await client(`${keyed.url}/v1`, "not-the-key-at-all-000")
      // eslint-disable-next-line @typescript-eslint/no-deprecated -- the format DALL·E clients ask for, which the gateway answers
      .images.generate({ prompt: "a locked door", response_format: "b64_json", size: "256x256" })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(error).toMatchObject({ code: "invalid_api_key" });
    const answer = await client(`${keyed.url}/v1`, KEY).images.generate({ prompt: "an open door", size: "256x256" });
    // With keys, the URL is signed: it works without a key, as an <img src> would fetch it.
    const url = answer.data?.[0]?.url ?? "";
    expect(url).toMatch(/\?expires=\d+&sig=/);
    expect((await fetch(url)).status).toBe(200);
    expect(emulator.stats().generateRequests).toBe(1);
  });

  it("raises RateLimitError, with Retry-After, while the queue is full", async () => {
    emulator.setStepMs(200);
    // eslint-disable-next-line @typescript-eslint/no-deprecated -- the format DALL·E clients ask for, which the gateway answers
    const busy = client().images.generate({ prompt: "busy", n: 3, size: "256x256", response_format: "b64_json", num_inference_steps: 8 } as OpenAI.ImageGenerateParamsNonStreaming);
    await expect.poll(() => emulator.stats().active).toBe(2);
    const error: unknown = await client()
      .images.generate({ prompt: "one too many", size: "256x256" })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect((error as InstanceType<typeof OpenAI.RateLimitError>).headers.get("retry-after")).toBe("5");
    expect((await busy).data).toHaveLength(3);
  });

  it("lists the one model, retrieves it by its name (its slash encoded or not), and answers another model and an unknown path with NotFoundError", async () => {
    const models = await client().models.list();
    expect(models.data.map((model) => [model.id, model.object])).toEqual([["Tongyi-MAI/Z-Image-Turbo", "model"]]);
    expect(await client().models.retrieve("Tongyi-MAI/Z-Image-Turbo")).toEqual(models.data[0]);
    const plain = await fetch(`${gateway.url}/v1/models/Tongyi-MAI/Z-Image-Turbo`);
    expect(await plain.json()).toEqual(models.data[0]);
    const unknown: unknown = await client()
      .models.retrieve("dall-e-3")
      .catch((caught: unknown) => caught);
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
    expect(unknown).toMatchObject({ code: "model_not_found", param: "model" });
    const error: unknown = await client()
      .embeddings.create({ model: "x", input: "y" })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.NotFoundError);
  });
});

describe("the AI SDK", () => {
  it("generateImage with createOpenAI({ baseURL, apiKey }).image(...) gets the GPU server's images at the asked size", async () => {
    const provider = createOpenAI({ baseURL: `${keyed.url}/v1`, apiKey: KEY });
    const { images } = await generateImage({ model: provider.image("z-image-turbo"), prompt: "a paper crane", n: 2, size: "512x512", maxRetries: 0 });
    expect(images).toHaveLength(2);
    const seeds = emulator.stats().lastSeeds;
    const expected = new Set((await Promise.all(seeds.map((seed) => emulatorImage("a paper crane", 512, 512, seed)))).map((image) => image.toString("base64")));
    for (const image of images) {
      expect(image.mediaType).toBe("image/jpeg");
      expect(jpegSize(Buffer.from(image.uint8Array))).toEqual([512, 512]);
      expect(expected.has(image.base64)).toBe(true);
    }
  });

  it("gets base64 for a gpt-image model, which sends no response_format (as OpenAI answers those)", async () => {
    const provider = createOpenAI({ baseURL: `${gateway.url}/v1`, apiKey: "any" });
    const { image } = await generateImage({ model: provider.image("gpt-image-1"), prompt: "a teacup", size: "256x256", maxRetries: 0 });
    // The SDK reads b64_json only: a URL answer would have failed its parse.
    expect(jpegSize(Buffer.from(image.uint8Array))).toEqual([256, 256]);
  });
});
