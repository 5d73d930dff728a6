/**
 * Many gateways, one service, measured: one gateway alone (jobs in SQLite,
 * images on disk) beside two sharing a redis-server and an s3rver bucket
 * (JOB_STORE=redis, IMAGE_STORE=s3), all before one emulator.
 *
 * - Job overhead: POST /api/jobs with `Prefer: wait` until the job has
 *   ended, then its image fetched, against POST /api/generate (which answers
 *   the image itself); one client at a time, then 8 at once.
 * - Cross-gateway event latency: from the emulator sending a progress event
 *   (it stamps them: EMULATOR_STAMP_EVENTS) to a client of /events receiving
 *   it, the job submitted on A and followed on B; beside the same on the one
 *   gateway alone.
 * - Image GET: a job's image through the gateway from its disk, streamed from
 *   the bucket, and as a redirect to a presigned URL would serve it (the
 *   gateway's own check, a HEAD, then a GET of the presigned URL straight
 *   from the bucket: the gateway has no redirect mode to time).
 *
 *   tsx bench/shared.ts   (npm run bench runs it too; --only shared)
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { startRedisServer } from "../tests/redis-server";
import { GENERATE_BODY, root, startEmulator, startGateway } from "./servers";
import type { Server } from "./servers";

/** Latency percentiles and throughput of one way of doing something. */
export interface Timing {
  p50: number;
  p99: number;
  /** Completed per second with CONCURRENCY clients (undefined where not measured). */
  rps?: number;
}

export interface SharedResult {
  generate: Timing;
  /** To the job's end; and with its image fetched after. */
  jobAlone: { ended: Timing; withImage: Timing };
  jobShared: { ended: Timing; withImage: Timing };
  events: { alone: Timing & { samples: number }; shared: Timing & { samples: number } };
  image: { bytes: number; file: Timing; s3Streamed: Timing; s3Redirect: Timing };
}

const SEQUENTIAL = 40;
const CONCURRENCY = 8;
const CONCURRENT_TOTAL = 160;
const EVENT_JOBS = 60;
const EVENT_STEP_MS = 30;
const IMAGE_GETS = 400;
const TOKEN = { "x-client-token": "bench-shared-client" };
const JSON_HEADERS = { "content-type": "application/json", ...TOKEN };
const EVENT_BODY = JSON.stringify({ prompt: "benchmark: events across gateways", width: 256, height: 256, num_inference_steps: 12 });

interface Bucket {
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** s3rver in its own process (bench/bucket.ts). */
async function startBucket(): Promise<Bucket> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(root, "bench/bucket.ts")], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  let first: string | undefined;
  for await (const line of createInterface({ input: child.stdout })) {
    first = line;
    break;
  }
  if (first === undefined) throw new Error("bench/bucket.ts printed nothing");
  child.stdout.resume();
  return {
    env: JSON.parse(first) as Record<string, string>,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function timing(samples: number[], rps?: number): Timing {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), ...(rps === undefined ? {} : { rps }) };
}

/** `once` SEQUENTIAL times one after another (latency), then CONCURRENT_TOTAL times CONCURRENCY at once (throughput). */
async function measure(once: () => Promise<number[]>): Promise<Timing[]> {
  const sequential: number[][] = [];
  for (let i = 0; i < SEQUENTIAL; i++) sequential.push(await once());
  let next = 0;
  const startedAt = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < CONCURRENT_TOTAL) await once();
    }),
  );
  const rps = CONCURRENT_TOTAL / ((performance.now() - startedAt) / 1000);
  const columns = sequential[0]?.length ?? 0;
  return Array.from({ length: columns }, (_, column) => timing(sequential.map((row) => row[column] ?? Number.NaN), rps));
}

async function ok(response: Response, what: string): Promise<Response> {
  if (response.status >= 300) throw new Error(`${what} answered ${response.status}: ${await response.text()}`);
  return response;
}

/** POST /api/generate, its whole answer read: [ms]. */
async function generateOnce(gateway: Server): Promise<number[]> {
  const at = performance.now();
  await (await ok(await fetch(`${gateway.url}/api/generate`, { method: "POST", body: GENERATE_BODY, headers: JSON_HEADERS }), "generate")).arrayBuffer();
  return [performance.now() - at];
}

/** A job submitted on `on` and waited for; its image fetched from `from`: [ms to its end, ms with the image]. */
async function jobOnce(on: Server, from: Server): Promise<number[]> {
  const at = performance.now();
  const response = await ok(await fetch(`${on.url}/api/jobs`, { method: "POST", body: GENERATE_BODY, headers: { ...JSON_HEADERS, prefer: "wait=60" } }), "job");
  const job = (await response.json()) as { status: string; output: { image_url: string } | null };
  if (job.status !== "succeeded" || !job.output) throw new Error(`a job ended ${job.status}`);
  const ended = performance.now() - at;
  await (await ok(await fetch(`${from.url}${job.output.image_url}`, { headers: TOKEN }), "image")).arrayBuffer();
  return [ended, performance.now() - at];
}

/**
 * Jobs submitted on `on`, followed on `follow`, CONCURRENCY at a time: each
 * progress event's delay from the emulator's stamp to its arrival. Events the
 * stream replayed (sent before it opened) are left out.
 */
async function eventDelays(on: Server, follow: Server): Promise<number[]> {
  const delays: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next++ < EVENT_JOBS) {
        const job = (await (await ok(await fetch(`${on.url}/api/jobs`, { method: "POST", body: EVENT_BODY, headers: JSON_HEADERS }), "job")).json()) as { urls: { events: string } };
        const stream = await ok(await fetch(`${follow.url}${job.urls.events}`, { headers: TOKEN }), "events");
        const openedAt = performance.timeOrigin + performance.now();
        let buffered = "";
        const decoder = new TextDecoder();
        const reader = (stream.body ?? new ReadableStream<Uint8Array>()).getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          const now = performance.timeOrigin + performance.now();
          buffered += decoder.decode(value, { stream: true });
          const events = buffered.split("\n\n");
          buffered = events.pop() ?? "";
          for (const event of events) {
            const stamp = /"emulator_sent_at":\s*([\d.]+)/.exec(event)?.[1];
            if (stamp !== undefined && Number(stamp) >= openedAt) delays.push(now - Number(stamp));
          }
        }
      }
    }),
  );
  return delays;
}

/** CONCURRENCY clients getting `get` IMAGE_GETS times in all. */
async function imageLoad(get: () => Promise<void>): Promise<Timing> {
  const samples: number[] = [];
  let next = 0;
  const startedAt = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < IMAGE_GETS) {
        const at = performance.now();
        await get();
        samples.push(performance.now() - at);
      }
    }),
  );
  return timing(samples, IMAGE_GETS / ((performance.now() - startedAt) / 1000));
}

async function fetchAll(url: string, init: RequestInit = {}): Promise<void> {
  await (await ok(await fetch(url, init), url)).arrayBuffer();
}

export async function manyGateways(): Promise<SharedResult> {
  const stops: (() => Promise<void>)[] = [];
  const dirs: string[] = [];
  const dataDir = () => {
    const dir = mkdtempSync(path.join(tmpdir(), "bench-shared-"));
    dirs.push(dir);
    return dir;
  };
  try {
    const [emulator, redis, bucket] = await Promise.all([startEmulator({ EMULATOR_STAMP_EVENTS: "true" }), startRedisServer(), startBucket()]);
    stops.push(() => emulator.stop(), () => redis.stop(), () => bucket.stop());
    const common = { MAX_CONCURRENT_REQUESTS: "16", LOG_LEVEL: "warn" };
    const alone = await startGateway({ upstreamUrl: emulator.url, env: { ...common, DATA_DIR: dataDir() } });
    stops.push(() => alone.stop());
    const shared = { ...common, ...bucket.env, REDIS_URL: redis.url };
    const [a, b] = await Promise.all([
      startGateway({ upstreamUrl: emulator.url, env: { ...shared, DATA_DIR: dataDir() } }),
      startGateway({ upstreamUrl: emulator.url, env: { ...shared, DATA_DIR: dataDir() } }),
    ]);
    stops.push(
      () => a.stop(),
      () => b.stop(),
    );

    console.log(`bench: shared: one gateway ${alone.url}; A ${a.url} and B ${b.url} on Redis ${redis.url} and a bucket at ${bucket.env.S3_ENDPOINT ?? "?"}`);
    for (const gateway of [alone, a]) await jobOnce(gateway, gateway); // warm: routes compiled, connections open
    await generateOnce(alone);
    const [generate] = await measure(() => generateOnce(alone));
    const [aloneEnded, aloneWithImage] = await measure(() => jobOnce(alone, alone));
    const [sharedEnded, sharedWithImage] = await measure(() => jobOnce(a, b));

    console.log("bench: shared: job overhead measured; image GETs");
    const fileJob = await lastImage(alone);
    const s3Job = await lastImage(a);
    const s3 = new S3Client({
      endpoint: bucket.env.S3_ENDPOINT,
      region: bucket.env.AWS_REGION,
      forcePathStyle: true,
      credentials: { accessKeyId: bucket.env.AWS_ACCESS_KEY_ID ?? "", secretAccessKey: bucket.env.AWS_SECRET_ACCESS_KEY ?? "" },
    });
    const key = (await s3Keys(s3, bucket.env.S3_BUCKET ?? "")).find((name) => name.endsWith(s3Job.sha256));
    if (key === undefined) throw new Error("the shared job's image is not in the bucket");
    const file = await imageLoad(() => fetchAll(`${alone.url}${fileJob.url}`, { headers: TOKEN }));
    const s3Streamed = await imageLoad(() => fetchAll(`${b.url}${s3Job.url}`, { headers: TOKEN }));
    const s3Redirect = await imageLoad(async () => {
      // What a redirect costs: the gateway's check of the caller (as GET's, without the bytes), a presigned URL, the bytes from the bucket.
      await fetchAll(`${b.url}${s3Job.url}`, { method: "HEAD", headers: TOKEN });
      await fetchAll(await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket.env.S3_BUCKET, Key: key }), { expiresIn: 300 }));
    });
    s3.destroy();

    console.log("bench: shared: image GETs measured; event latency");
    await ok(await fetch(`${emulator.url}/_emulator/step`, { method: "PUT", body: JSON.stringify({ ms: EVENT_STEP_MS }) }), "step");
    const aloneDelays = await eventDelays(alone, alone);
    const sharedDelays = await eventDelays(a, b);
    return {
      generate: generate ?? timing([]),
      jobAlone: { ended: aloneEnded ?? timing([]), withImage: aloneWithImage ?? timing([]) },
      jobShared: { ended: sharedEnded ?? timing([]), withImage: sharedWithImage ?? timing([]) },
      events: { alone: { ...timing(aloneDelays), samples: aloneDelays.length }, shared: { ...timing(sharedDelays), samples: sharedDelays.length } },
      image: { bytes: s3Job.bytes, file, s3Streamed, s3Redirect },
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

/** The newest job of the benchmark's client on `gateway`: its image's URL, digest and size. */
async function lastImage(gateway: Server): Promise<{ url: string; sha256: string; bytes: number }> {
  const { jobs } = (await (await ok(await fetch(`${gateway.url}/api/jobs?limit=1`, { headers: TOKEN }), "list")).json()) as { jobs: { output: { image_url: string; sha256: string; bytes: number } | null }[] };
  const output = jobs[0]?.output;
  if (!output) throw new Error("no finished job to take an image from");
  return { url: output.image_url, sha256: output.sha256, bytes: output.bytes };
}

async function s3Keys(s3: S3Client, bucket: string): Promise<string[]> {
  return ((await s3.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents ?? []).map((object) => object.Key ?? "");
}

const ms = (value: number) => `${value.toFixed(1)} ms`;
const line = (t: Timing) => `p50 ${ms(t.p50)}, p99 ${ms(t.p99)}${t.rps === undefined ? "" : `, ${t.rps.toFixed(1)}/s at ${CONCURRENCY} clients`}`;

/** The report's lines for it. */
export function sharedLines(result: SharedResult): string[] {
  const ratio = (t: Timing) => `${(t.p50 / result.generate.p50).toFixed(2)}× generate's p50`;
  const goal = result.events.shared.p99 < 100 ? "met" : "NOT met";
  return [
    `- Job overhead (1024×1024 PNG of ${(result.image.bytes / 1e6).toFixed(2)} MB; ${SEQUENTIAL} one at a time for the percentiles, ${CONCURRENT_TOTAL} by ${CONCURRENCY} clients for the rate):`,
    `  - \`POST /api/generate\` (the image in the answer): ${line(result.generate)}`,
    `  - a job, one gateway (SQLite, disk): to its end ${line(result.jobAlone.ended)} (${ratio(result.jobAlone.ended)}); with its image fetched ${line(result.jobAlone.withImage)} (${ratio(result.jobAlone.withImage)})`,
    `  - a job, shared (Redis, bucket; submitted on A, image from B): to its end ${line(result.jobShared.ended)} (${ratio(result.jobShared.ended)}); with its image fetched ${line(result.jobShared.withImage)} (${ratio(result.jobShared.withImage)})`,
    `- Event latency, GPU server's send to the client's receipt (${EVENT_JOBS} jobs of 12 steps, 4 at once): one gateway p50 ${ms(result.events.alone.p50)}, p99 ${ms(result.events.alone.p99)} (${result.events.alone.samples} events); ` +
      `submitted on A, followed on B p50 ${ms(result.events.shared.p50)}, p99 ${ms(result.events.shared.p99)} (${result.events.shared.samples} events) — goal p99 < 100 ms: ${goal}`,
    `- Image GET of ${(result.image.bytes / 1e6).toFixed(2)} MB (${IMAGE_GETS} by ${CONCURRENCY} clients): from the disk ${line(result.image.file)}; streamed from the bucket ${line(result.image.s3Streamed)}; ` +
      `as a presigned redirect would serve it (the gateway's check, then the bucket) ${line(result.image.s3Redirect)}. Through the gateway: the whole image when it streams, none after a redirect`,
  ];
}

if (import.meta.url === `file://${process.argv[1] ?? ""}`) {
  console.log(sharedLines(await manyGateways()).join("\n"));
}
