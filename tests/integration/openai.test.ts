/**
 * The OpenAI Images API as its users reach it: the official `openai` client
 * and the AI SDK's generateImage, configured with the gateway's /v1 as their
 * base URL, against the built gateway and the emulator. Each image is
 * decoded, its size checked, and compared byte for byte with the one the
 * emulator makes for the same seed.
 */
import { request as httpRequest } from "node:http";
import { createOpenAI } from "@ai-sdk/openai";
import { generateImage } from "ai";
import OpenAI from "openai";
import { afterAll, beforeEach, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { it } from "./fixtures";
import { call, directImage, eventually } from "./harness";
import type { Gateway } from "./harness";

const KEY = "openai-test-key-0123456789";
let emulator: Emulator;
let gateway: Gateway;
let keyed: Gateway;

it.beforeAll(async ({ startFileGateway }) => {
  emulator = await startEmulator({ stepMs: 10, slots: 8 });
  [gateway, keyed] = await Promise.all([
    startFileGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, MAX_CONCURRENT_REQUESTS: "2", MAX_QUEUE: "1" }),
    startFileGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, GATEWAY_API_KEYS: KEY }),
  ]);
});

afterAll(() => emulator.close());

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
      .images.generate({ prompt: "a bad size, streamed", size: "1000x1000", stream: true })
      .catch((caught: unknown) => caught);
    expect(stream).toMatchObject({ status: 400, param: "size" });
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

describe("n images in one request", () => {
  it("never refuses a request that fits alone because of its own siblings: n=4 on 2 slots and a queue of 1", async () => {
    emulator.setStepMs(30);
    const params = { prompt: "four at once", n: 4, size: "256x256", response_format: "b64_json", num_inference_steps: 6 };
    const answer = await client().images.generate(params as OpenAI.ImageGenerateParamsNonStreaming);
    expect(answer.data).toHaveLength(4);
    expect(emulator.stats().maxConcurrent).toBeLessThanOrEqual(2);
  });

  it("records the request's wall time, not the sum of its images' upstream times", async () => {
    emulator.setStepMs(50);
    const printed = gateway.output().length;
    const params = { prompt: "timed pair", n: 2, size: "256x256", response_format: "b64_json", num_inference_steps: 6 };
    await client().images.generate(params as OpenAI.ImageGenerateParamsNonStreaming);
    expect(await eventually(() => gateway.output().slice(printed).includes('"route":"/v1/images/generations"'))).toBe(true);
    const line = gateway.output().slice(printed).split("\n").find((text) => text.includes('"route":"/v1/images/generations"')) ?? "";
    const { duration_ms: duration, upstream_ms: upstream } = JSON.parse(line) as { duration_ms: number; upstream_ms: number };
    expect(upstream).toBeGreaterThan(250); // six steps of 50 ms, at least
    expect(upstream).toBeLessThanOrEqual(duration);
  });

  it("stops the siblings of a failed image as a client that left: their slots stay held while the GPU runs them", async ({ startGateway, onTestFinished }) => {
    // One GPU slot and no queue there: the second image is refused with a 503 while the first runs to its end.
    const small = await startEmulator({ stepMs: 100, slots: 1, maxQueue: 0 });
    onTestFinished(() => small.close());
    const own = await startGateway({ TEXT2IMAGE_SERVER_URL: small.url, MAX_CONCURRENT_REQUESTS: "2" });
    const answer = await call(`${own.url}/v1/images/generations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "one refused", n: 2, size: "256x256", response_format: "b64_json", num_inference_steps: 12 }),
    });
    expect(answer.status).toBe(503);
    expect(answer.body).toMatchObject({ error: { message: "Request queue is full (max 0). Please try again later." } });
    expect(small.stats().work, "the first image still runs on the GPU").toBe(1);
    const health = (await call(`${own.url}/api/health`)).body as { in_flight: number; orphaned: number };
    expect(health, "its slot is held until the server is seen done").toMatchObject({ in_flight: 1, orphaned: 1 });
    expect(await eventually(async () => ((await call(`${own.url}/api/health`)).body as { in_flight: number }).in_flight === 0, 5000)).toBe(true);
  });
});

/** POST /v1/images/generations with the Host and other headers as given (fetch will not send another Host). */
function postWithHost(url: string, host: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<{ status: number; body: { data?: { url: string }[]; error?: { message: string } } }> {
  return new Promise((resolve, reject) => {
    const target = new URL(`${url}/v1/images/generations`);
    const sent = httpRequest(target, { method: "POST", headers: { host, "content-type": "application/json", ...headers } }, (response) => {
      let text = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (text += chunk));
      response.on("end", () => {
        resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as { data?: { url: string }[] } });
      });
    });
    sent.on("error", reject);
    sent.end(JSON.stringify(body));
  });
}

describe("image URLs", () => {
  const asked = { prompt: "where am I", size: "256x256", response_format: "url", num_inference_steps: 6 };

  it("are built from a valid Host; one that is no host[:port] is a 400 before any generation", async () => {
    const valid = await postWithHost(gateway.url, "images.example:8443", asked);
    expect(valid.body.data?.[0]?.url).toMatch(/^http:\/\/images\.example:8443\/api\/images\/[0-9a-f]{64}\.jpg$/);
    const sent = emulator.stats().generateRequests;
    const invalid = await postWithHost(gateway.url, "ex!ample.com", asked);
    expect(invalid.status).toBe(400);
    expect(invalid.body.error?.message).toMatch(/^Host is not a valid host\[:port\]/);
    expect(emulator.stats().generateRequests).toBe(sent);
    // b64_json makes no URL: the Host does not matter.
    expect((await postWithHost(gateway.url, "ex!ample.com", { ...asked, response_format: "b64_json" })).status).toBe(200);
  });

  it("come from PUBLIC_BASE_URL when it is set, whatever the Host; X-Forwarded-Host only behind TRUST_PROXY, and checked", async ({ startGateway }) => {
    const [based, proxied] = await Promise.all([
      startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, PUBLIC_BASE_URL: "https://images.example.com" }),
      startGateway({ TEXT2IMAGE_SERVER_URL: emulator.url, TRUST_PROXY: "1" }),
    ]);
    expect((await postWithHost(based.url, "evil.example", asked)).body.data?.[0]?.url).toMatch(/^https:\/\/images\.example\.com\/api\/images\//);
    expect((await postWithHost(gateway.url, "127.0.0.1", asked, { "x-forwarded-host": "evil.example" })).body.data?.[0]?.url).toMatch(/^http:\/\/127\.0\.0\.1\//);
    expect((await postWithHost(proxied.url, "127.0.0.1", asked, { "x-forwarded-host": "public.example", "x-forwarded-proto": "https" })).body.data?.[0]?.url).toMatch(/^https:\/\/public\.example\/api\/images\//);
    const refused = await postWithHost(proxied.url, "127.0.0.1", asked, { "x-forwarded-host": 'a"b<script>' });
    expect(refused.status).toBe(400);
    expect(refused.body.error?.message).toMatch(/^X-Forwarded-Host is not a valid host\[:port\]/);
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
