/**
 * What OpenAI's output_format costs when the GPU server's format differs:
 * sharp converting the emulator's noisy 1024×1024 images (as hard to compress
 * as a photo) in this process, each way: milliseconds per image, the resident
 * memory a conversion adds, the event loop's worst delay meanwhile (sharp
 * runs on libuv's pool). Then through the built gateway: /v1 answers as
 * base64 with the server's own format (no conversion) and with another, and
 * what loading sharp adds to the gateway's memory (it is loaded on the first
 * conversion only).
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { imageDataUri } from "../emulator/image";
import { answerImage, convertImage } from "../lib/upstream/image";
import type { AnswerImage, OutputFormat } from "../lib/upstream/image";
import { residentBytes } from "../tests/proc";
import { startEmulator, startGateway } from "./servers";
import type { Server } from "./servers";

export interface Conversion {
  from: "jpeg" | "png";
  to: OutputFormat;
  inBytes: number;
  outBytes: number;
  p50Ms: number;
  /** Resident memory over the idle process at the peak of one conversion at a time, and of four at once. */
  oneAtATimeMb: number;
  fourAtOnceMb: number;
  worstEventLoopMs: number;
}

export interface ConvertResult {
  conversions: Conversion[];
  /** /v1 b64_json of a 1024×1024 JPEG, median ms: as the server made it, and converted to WebP. */
  gatewayAsIsMs: number;
  gatewayConvertedMs: number;
  /** The gateway's resident memory at rest before its first conversion, and after it (sharp and libvips loaded). */
  gatewayRestMb: number;
  gatewayAfterMb: number;
}

const ROUNDS = 15;
const MB = 1024 * 1024;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

function sourceImage(format: "jpeg" | "png"): AnswerImage {
  const uri = imageDataUri("benchmark: a red fox in snow", "42", 1024, 1024, "noise", format);
  return answerImage(Buffer.from(JSON.stringify({ image_base64: uri, width: 1024, height: 1024 })));
}

/** The peak resident memory over `base` while `run` goes, sampled every 2 ms. */
async function peakOver(base: number, run: () => Promise<unknown>): Promise<number> {
  let peak = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 2);
  try {
    await run();
  } finally {
    clearInterval(sampler);
  }
  return Math.max(0, Math.max(peak, process.memoryUsage.rss()) - base) / MB;
}

async function convertEachWay(): Promise<Conversion[]> {
  const conversions: Conversion[] = [];
  const ways: [Conversion["from"], OutputFormat][] = [
    ["jpeg", "png"],
    ["jpeg", "webp"],
    ["png", "jpeg"],
    ["png", "webp"],
  ];
  // Loaded and warmed once: the figures are per image, not the first load.
  await convertImage(sourceImage("jpeg"), "webp");
  for (const [from, to] of ways) {
    const image = sourceImage(from);
    let outBytes = 0;
    const delay = monitorEventLoopDelay({ resolution: 1 });
    const times: number[] = [];
    global.gc?.();
    const base = process.memoryUsage.rss();
    delay.enable();
    const oneAtATimeMb = await peakOver(base, async () => {
      for (let i = 0; i < ROUNDS; i++) {
        const at = performance.now();
        outBytes = (await convertImage(image, to)).bytes.length;
        times.push(performance.now() - at);
      }
    });
    const fourAtOnceMb = await peakOver(base, () => Promise.all(Array.from({ length: 4 }, () => convertImage(image, to))));
    delay.disable();
    conversions.push({ from, to, inBytes: image.bytes.length, outBytes, p50Ms: median(times), oneAtATimeMb, fourAtOnceMb, worstEventLoopMs: delay.max / 1e6 });
  }
  return conversions;
}

async function v1Once(gateway: Server, outputFormat: string): Promise<number> {
  const at = performance.now();
  const response = await fetch(`${gateway.url}/v1/images/generations`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-image-1", prompt: "benchmark: a red fox in snow", seed: 42, size: "1024x1024", output_format: outputFormat }),
  });
  const body = (await response.json()) as { output_format?: string };
  if (response.status !== 200 || body.output_format !== outputFormat) throw new Error(`/v1 answered ${response.status} ${JSON.stringify(body).slice(0, 200)}`);
  return performance.now() - at;
}

/** A process's resident memory once its last answer has settled. */
async function settledRssMb(pid: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 500));
  return (residentBytes(pid) ?? Number.NaN) / MB;
}

async function throughGateway(): Promise<Pick<ConvertResult, "gatewayAsIsMs" | "gatewayConvertedMs" | "gatewayRestMb" | "gatewayAfterMb">> {
  const servers: Server[] = [];
  try {
    const emulator = await startEmulator({ EMULATOR_IMAGE_FORMAT: "jpeg" });
    servers.push(emulator);
    const gateway = await startGateway({ upstreamUrl: emulator.url, env: { LOG_LEVEL: "warn" } });
    servers.push(gateway);
    const asIs: number[] = [];
    for (let i = 0; i < ROUNDS + 2; i++) asIs.push(await v1Once(gateway, "jpeg"));
    const gatewayRestMb = await settledRssMb(gateway.pid);
    const converted: number[] = [];
    for (let i = 0; i < ROUNDS + 2; i++) converted.push(await v1Once(gateway, "webp"));
    const gatewayAfterMb = await settledRssMb(gateway.pid);
    // The first two of each are warm-up.
    return { gatewayAsIsMs: median(asIs.slice(2)), gatewayConvertedMs: median(converted.slice(2)), gatewayRestMb, gatewayAfterMb };
  } finally {
    for (const server of servers.reverse()) await server.stop();
  }
}

export async function outputFormats(): Promise<ConvertResult> {
  return { conversions: await convertEachWay(), ...(await throughGateway()) };
}

export function convertLines(result: ConvertResult): string[] {
  const kb = (bytes: number) => `${Math.round(bytes / 1024)} KB`;
  return [
    "Converting one noisy 1024×1024 image with sharp (libvips on libuv's pool), in the bench process:",
    "",
    "| from → to | in → out | per image (p50) | memory added, one at a time | four at once | event loop's worst delay |",
    "|---|---|---:|---:|---:|---:|",
    ...result.conversions.map(
      (c) => `| ${c.from} → ${c.to} | ${kb(c.inBytes)} → ${kb(c.outBytes)} | ${c.p50Ms.toFixed(1)} ms | ${c.oneAtATimeMb.toFixed(1)} MB | ${c.fourAtOnceMb.toFixed(1)} MB | ${c.worstEventLoopMs.toFixed(1)} ms |`,
    ),
    "",
    `Through the gateway, POST /v1/images/generations for a 1024×1024 b64_json from a JPEG server, one at a time (p50): ` +
      `output_format "jpeg" (passed as it came) ${result.gatewayAsIsMs.toFixed(1)} ms, "webp" (converted) ${result.gatewayConvertedMs.toFixed(1)} ms. ` +
      `The gateway's resident memory: ${result.gatewayRestMb.toFixed(0)} MB before its first conversion, ${result.gatewayAfterMb.toFixed(0)} MB after (sharp is loaded then, never for a gateway that does not convert).`,
  ];
}
