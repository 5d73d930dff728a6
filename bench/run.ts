/**
 * `npm run bench`: the gateway's overhead, measured with autocannon against the
 * emulator (zero latency, the fixed noisy 1024×1024 image, ≈1.4 MB of JSON)
 * three ways in one run: direct to the emulator, through a bare Next.js app
 * (bench/baseline) and through the built gateway. Builds what is missing,
 * prints the table and writes it to bench/results.md.
 *
 * Then a long queue of jobs (bench/queue.ts): what 1,000 waiting jobs keep,
 * how long they take to drain, the event loop's worst delay meanwhile; and
 * many gateways as one service (bench/shared.ts): a job's overhead alone and
 * shared through Redis and a bucket, events across gateways, image GETs; and
 * what OpenAI's output_format costs where the image is converted (bench/convert.ts).
 *
 *   npm run bench -- [--duration 10] [--warmup 3] [--rounds 3] [--only health,generate,stream,queue,shared,formats] [--rebuild] [--out bench/results.md]
 */
import { readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { runLoad } from "./load";
import { longQueue, queueLine } from "./queue";
import type { QueueResult } from "./queue";
import { convertLines, outputFormats } from "./convert";
import type { ConvertResult } from "./convert";
import { manyGateways, sharedLines } from "./shared";
import type { SharedResult } from "./shared";
import type { LoadResult } from "./load";
import { GENERATE_BODY, cpuSeconds, ensureBuilds, root, sampleRss, startBaseline, startEmulator, startGateway } from "./servers";
import type { Server } from "./servers";

const TARGETS = ["direct", "baseline", "gateway"] as const;
type Target = (typeof TARGETS)[number];

interface Scenario {
  name: string;
  label: string;
  method: "GET" | "POST";
  body?: string;
  connections: number;
  /** The path per target; a target without one is not measured. */
  paths: Partial<Record<Target, string>>;
}

const SCENARIOS: Scenario[] = [
  {
    name: "health",
    label: "GET /api/health",
    method: "GET",
    connections: 50,
    paths: { direct: "/health", baseline: "/api/health", gateway: "/api/health" },
  },
  {
    name: "generate",
    label: "POST /api/generate",
    method: "POST",
    body: GENERATE_BODY,
    connections: 16,
    paths: { direct: "/generate", baseline: "/api/generate", gateway: "/api/generate" },
  },
  {
    name: "stream",
    label: "POST /api/generate-stream",
    method: "POST",
    body: GENERATE_BODY,
    connections: 16,
    paths: { direct: "/generate-stream", gateway: "/api/generate-stream" },
  },
];

interface Measurement {
  round: number;
  scenario: string;
  target: Target;
  result: LoadResult;
  peakRss: number | undefined;
  /** CPU time the server process spent per answer, in ms. */
  cpuMs: number | undefined;
}

const { values: args } = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    warmup: { type: "string", default: "3" },
    rounds: { type: "string", default: "3" },
    only: { type: "string" },
    rebuild: { type: "boolean", default: false },
    out: { type: "string", default: path.join(root, "bench/results.md") },
  },
});
const duration = positive("duration", args.duration);
const warmup = positive("warmup", args.warmup, true);
const rounds = positive("rounds", args.rounds);
const only = args.only?.split(",").map((name) => name.trim());
const scenarios = only ? SCENARIOS.filter((s) => only.includes(s.name)) : SCENARIOS;
const measureQueue = !only || only.includes("queue");
const measureShared = !only || only.includes("shared");
const measureFormats = !only || only.includes("formats");
if (scenarios.length === 0 && !measureQueue && !measureShared && !measureFormats) {
  throw new Error(`--only names none of ${[...SCENARIOS.map((s) => s.name), "queue", "shared", "formats"].join(", ")}`);
}

function positive(name: string, raw: string, zeroOk = false): number {
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0 || (!zeroOk && value === 0)) throw new Error(`--${name} must be a positive number, not ${raw}`);
  return value;
}

ensureBuilds(args.rebuild);

const servers: Server[] = [];
const loadBefore = os.loadavg();
const measurements: Measurement[] = [];
let answerBytes: Partial<Record<string, number>> = {};
let queue: QueueResult | undefined;
let shared: SharedResult | undefined;
let formats: ConvertResult | undefined;
try {
  const emulator = await startEmulator();
  servers.push(emulator);
  /** The two Next.js servers, started afresh for each scenario: a peak RSS then belongs to that scenario's load alone. */
  const startNext = async (): Promise<Record<Target, Server>> => {
    const baseline = await startBaseline({ upstreamUrl: emulator.url });
    servers.push(baseline);
    const gateway = await startGateway({ upstreamUrl: emulator.url });
    servers.push(gateway);
    return { direct: emulator, baseline, gateway };
  };
  const stopNext = async (byTarget: Record<Target, Server>) => {
    for (const server of [byTarget.gateway, byTarget.baseline]) {
      await server.stop();
      servers.splice(servers.indexOf(server), 1);
    }
  };
  const first = await startNext();
  console.log(`bench: emulator ${emulator.url}, baseline ${first.baseline.url}, gateway ${first.gateway.url}; ${rounds} round(s) of ${scenarios.map((s) => s.name).join(", ")}`);
  answerBytes = await checkAnswers(first);
  await stopNext(first);

  for (let round = 0; round < rounds; round++) {
    for (const scenario of scenarios) {
      const byTarget = await startNext();
      // Rotate the order each round so a drift of the shared machine does not always favour one target.
      const order = TARGETS.map((_, i) => TARGETS[(i + round) % TARGETS.length] as Target);
      for (const target of order) {
        const urlPath = scenario.paths[target];
        if (urlPath === undefined) continue;
        const server = byTarget[target];
        const spec = { url: server.url + urlPath, method: scenario.method, body: scenario.body, connections: scenario.connections };
        if (warmup > 0) await runLoad({ ...spec, duration: warmup });
        const rss = sampleRss(server.pid);
        const cpuBefore = cpuSeconds(server.pid);
        const result = await runLoad({ ...spec, duration });
        const cpuAfter = cpuSeconds(server.pid);
        const peakRss = rss.stop();
        const cpuMs = cpuBefore === undefined || cpuAfter === undefined || result.completed === 0 ? undefined : ((cpuAfter - cpuBefore) * 1000) / result.completed;
        measurements.push({ round, scenario: scenario.name, target, result, peakRss, cpuMs });
        console.log(
          `bench: round ${round + 1}/${rounds} ${scenario.name.padEnd(8)} ${target.padEnd(8)} ${fmt(result.rps).padStart(7)} rps  p50 ${ms(result.p50)}  p99 ${ms(result.p99)}  CPU/answer ${cpuMs === undefined ? "n/a" : cpuMs.toFixed(2)} ms  RSS ${mb(peakRss)}` +
            (result.failures > 0 ? `  ${result.failures} FAILED` : ""),
        );
      }
      await stopNext(byTarget);
    }
  }
} finally {
  for (const server of servers.reverse()) await server.stop();
}
if (measureQueue) {
  queue = await longQueue();
  console.log(`bench: ${queueLine(queue)}`);
}
if (measureShared) {
  shared = await manyGateways();
  for (const line of sharedLines(shared)) console.log(`bench: ${line}`);
}
if (measureFormats) {
  formats = await outputFormats();
  for (const line of convertLines(formats)) console.log(`bench: ${line}`);
}

const report = renderReport();
console.log(`\n${report}`);
writeFileSync(args.out, report);
console.log(`bench: written to ${path.relative(process.cwd(), args.out)}`);

/** One request per scenario and target before the load: each must answer 200, and the image must be the big one. */
async function checkAnswers(byTarget: Record<Target, Server>): Promise<Partial<Record<string, number>>> {
  const sizes: Partial<Record<string, number>> = {};
  for (const scenario of scenarios) {
    for (const target of TARGETS) {
      const urlPath = scenario.paths[target];
      if (urlPath === undefined) continue;
      const response = await fetch(byTarget[target].url + urlPath, {
        method: scenario.method,
        ...(scenario.body === undefined ? {} : { body: scenario.body, headers: { "content-type": "application/json" } }),
      });
      const bytes = (await response.arrayBuffer()).byteLength;
      if (response.status !== 200) throw new Error(`${target} ${scenario.method} ${urlPath} answered ${response.status}`);
      if (scenario.body !== undefined && bytes < 1_000_000) throw new Error(`${target} ${urlPath} sent ${bytes} bytes: not the noise image`);
      sizes[`${scenario.name} ${target}`] = bytes;
    }
  }
  return sizes;
}

function renderReport(): string {
  const cpus = os.cpus();
  const loadAfter = os.loadavg();
  const lines: string[] = [
    "# Benchmark results",
    "",
    "Written by `npm run bench` (bench/run.ts). Direct = the emulator itself; baseline = a bare Next.js app",
    "(bench/baseline: a fixed JSON route and a route that pipes the emulator's answer through);",
    "gateway = the built gateway as `npm start` runs it (Node with the flags of its start script), default configuration. Ratios compare runs of the same round.",
    "",
    `- date: ${new Date().toISOString()}`,
    `- machine: ${cpus.length} cores, ${cpus[0]?.model ?? "unknown CPU"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB; load average ${loadBefore.map((l) => l.toFixed(2)).join(" ")} before, ${loadAfter.map((l) => l.toFixed(2)).join(" ")} after`,
    `- Node ${process.version}, Next ${packageVersion("next")}, autocannon ${packageVersion("autocannon")}, undici ${packageVersion("undici")}`,
    `- ${rounds} round(s) of ${duration} s per target and scenario, each after a ${warmup} s warm-up at the same load; connections: ${scenarios.map((s) => `${s.name} ${s.connections}`).join(", ")}`,
    `- emulator: EMULATOR_STEP_MS=0, EMULATOR_IMAGE=noise, EMULATOR_IMAGE_FORMAT=png; generate body ${GENERATE_BODY} (fixed seed: the emulator's cached image); answer ${answerSizes()}`,
    "- latency: request sent to last byte (for the stream, to its end), from each response's own timing; RSS: VmRSS of the listening process sampled every 100 ms during the measured runs (the two Next.js servers start afresh for each scenario; the emulator runs throughout); CPU: user + system time of that process during the run ÷ answers",
    "",
    "Figures are medians over the rounds; brackets give the min–max. Peak RSS is each run's own peak.",
    "",
  ];
  const header = ["scenario", "target", "conn", "rps", "p50 ms", "p99 ms", "+p50 vs direct", "×direct (rps)", "×baseline (rps)", "CPU ms/answer", "peak RSS MB", "failed"];
  const rows: string[][] = [];
  for (const scenario of scenarios) {
    for (const target of TARGETS) {
      const runs = of(scenario.name, target);
      if (runs.length === 0) continue;
      const rps = runs.map((m) => m.result.rps);
      rows.push([
        scenario.label,
        target,
        String(scenario.connections),
        spread(rps, fmt),
        ms(median(runs.map((m) => m.result.p50))),
        ms(median(runs.map((m) => m.result.p99))),
        target === "direct" ? "—" : signedMs(median(perRound(scenario.name, target, "direct", (a, b) => a.result.p50 - b.result.p50))),
        target === "direct" ? "—" : spread(perRound(scenario.name, target, "direct", (a, b) => a.result.rps / b.result.rps), ratio),
        target === "gateway" && of(scenario.name, "baseline").length > 0 ? spread(perRound(scenario.name, target, "baseline", (a, b) => a.result.rps / b.result.rps), ratio) : "—",
        cpu(runs),
        peakRss(runs),
        String(runs.reduce((sum, m) => sum + m.result.failures, 0)),
      ]);
    }
  }
  lines.push(...table(header, rows), "", ...targetLines());
  if (queue) lines.push("", "## Jobs", "", queueLine(queue));
  if (shared) lines.push("", "## Many gateways, one service", "", ...sharedLines(shared));
  if (formats) lines.push("", "## OpenAI output formats", "", ...convertLines(formats));
  lines.push("");
  return lines.join("\n");
}

function targetLines(): string[] {
  const out = ["## Targets (gateway ÷ bare Next.js, same run)", ""];
  const check = (label: string, values: number[], goal: string, met: (median: number) => boolean, format: (n: number) => string) => {
    if (values.length === 0) return;
    const mid = median(values);
    out.push(`- ${label}: ${spread(values, format)} — goal ${goal}: ${met(mid) ? "met" : "NOT met"}`);
  };
  const rpsRatio = (a: Measurement, b: Measurement) => a.result.rps / b.result.rps;
  check("`/api/generate` throughput", perRound("generate", "gateway", "baseline", rpsRatio), "≥ 0.95×", (m) => m >= 0.95, ratio);
  check("`/api/health` throughput", perRound("health", "gateway", "baseline", rpsRatio), "≥ 0.95×", (m) => m >= 0.95, ratio);
  // CPU per answer is steadier than throughput on a shared machine; shown beside it, not judged.
  const cpuRatio = (a: Measurement, b: Measurement) => (a.cpuMs ?? Number.NaN) / (b.cpuMs ?? Number.NaN);
  for (const scenario of ["generate", "health"]) {
    const values = perRound(scenario, "gateway", "baseline", cpuRatio).filter((v) => !Number.isNaN(v));
    if (values.length > 0) out.push(`- CPU per answer, \`${scenario}\`: gateway ÷ baseline ${spread(values, ratio)} (lower is better)`);
  }
  // Peak RSS is set mostly by when V8 first collects its old generation, which varies from run to run:
  // judged like the throughput, on the median over rounds of each run's peak.
  const rssRatios = perRound("generate", "gateway", "baseline", (a, b) => (a.peakRss ?? Number.NaN) / (b.peakRss ?? Number.NaN)).filter((v) => !Number.isNaN(v));
  if (rssRatios.length > 0) {
    const peaks = (target: Target) => spread(of("generate", target).map((m) => (m.peakRss ?? Number.NaN) / 2 ** 20), (n) => n.toFixed(0));
    check(`peak RSS under the generate load, gateway ÷ baseline (gateway ${peaks("gateway")} MB, baseline ${peaks("baseline")} MB)`, rssRatios, "≤ 1.00×", (m) => m <= 1, ratio);
  }
  return out;
}

/** Each run's peak RSS in MB: median (min–max) over the rounds. */
function peakRss(runs: Measurement[]): string {
  const known = runs.map((m) => m.peakRss).filter((v): v is number => v !== undefined);
  return known.length > 0 ? spread(known, mb) : "n/a";
}

/** The server's CPU time per answer: median over the rounds. */
function cpu(runs: Measurement[]): string {
  const known = runs.map((m) => m.cpuMs).filter((v): v is number => v !== undefined);
  return known.length > 0 ? median(known).toFixed(2) : "n/a";
}

function of(scenario: string, target: Target): Measurement[] {
  return measurements.filter((m) => m.scenario === scenario && m.target === target);
}

/** `f(target's run, other's run)` for every round in which both ran. */
function perRound(scenario: string, target: Target, other: Target, f: (a: Measurement, b: Measurement) => number): number[] {
  const values: number[] = [];
  for (const a of of(scenario, target)) {
    const b = of(scenario, other).find((m) => m.round === a.round);
    if (b) values.push(f(a, b));
  }
  return values;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)];
}

function answerSizes(): string {
  const generate = answerBytes["generate direct"] ?? answerBytes["stream direct"];
  return generate === undefined ? "n/a" : `${(generate / 1e6).toFixed(2)} MB`;
}

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(path.join(root, "node_modules", name, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "?";
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] ?? Number.NaN) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/** "median (min–max)", or the value alone for one round. */
function spread(values: number[], format: (n: number) => string): string {
  if (values.length === 0) return "—";
  if (values.length === 1) return format(values[0] ?? Number.NaN);
  return `${format(median(values))} (${format(Math.min(...values))}–${format(Math.max(...values))})`;
}

function fmt(n: number): string {
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

function ms(n: number): string {
  return Number.isNaN(n) ? "—" : n.toFixed(1);
}

function signedMs(n: number): string {
  return Number.isNaN(n) ? "—" : `${n >= 0 ? "+" : "−"}${Math.abs(n).toFixed(1)}`;
}

function ratio(n: number): string {
  return `${n.toFixed(2)}×`;
}

function mb(bytes: number | undefined): string {
  return bytes === undefined ? "n/a" : (bytes / 2 ** 20).toFixed(0);
}
