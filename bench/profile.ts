/**
 * CPU profile of the gateway (or the baseline app) under one of the
 * benchmark's loads: `node --cpu-prof` around `next start`, stopped with
 * SIGTERM so the profile is written, then summed by bench/cpuprofile.ts.
 *
 *   tsx bench/profile.ts [--target gateway|baseline] [--scenario generate|health|stream] [--duration 20]
 *                        [--dir /tmp/prof] [--top 25] [--env NAME=value]... [--node-flag --flag=value]...
 *                        [--inclusive text]... [--callers text]...
 */
import { mkdirSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { formatDetails, formatSummary, summarize } from "./cpuprofile";
import type { CpuProfile } from "./cpuprofile";
import { runLoad } from "./load";
import { GENERATE_BODY, ensureBuilds, startBaseline, startEmulator, startGateway } from "./servers";
import type { Server } from "./servers";

const { values: args } = parseArgs({
  options: {
    target: { type: "string", default: "gateway" },
    scenario: { type: "string", default: "generate" },
    duration: { type: "string", default: "20" },
    dir: { type: "string", default: "/tmp/prof" },
    top: { type: "string", default: "25" },
    env: { type: "string", multiple: true, default: [] },
    "node-flag": { type: "string", multiple: true, default: [] },
    inclusive: { type: "string", multiple: true, default: [] },
    callers: { type: "string", multiple: true, default: [] },
  },
});

const loads = {
  health: { path: "/api/health", method: "GET", connections: 50 },
  generate: { path: "/api/generate", method: "POST", body: GENERATE_BODY, connections: 16 },
  stream: { path: "/api/generate-stream", method: "POST", body: GENERATE_BODY, connections: 16 },
} as const;
const load = loads[args.scenario as keyof typeof loads] as (typeof loads)[keyof typeof loads] | undefined;
if (!load) throw new Error(`--scenario must be one of ${Object.keys(loads).join(", ")}`);
if (args.target !== "gateway" && args.target !== "baseline") throw new Error("--target must be gateway or baseline");
// Extra environment for the profiled server, e.g. --env LOG_LEVEL=silent, to see what a change would save.
const env = Object.fromEntries(args.env.map((pair) => [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)]));

ensureBuilds(false);
mkdirSync(args.dir, { recursive: true });
const startedAt = Date.now();
const servers: Server[] = [];
let answers = 0;
try {
  const emulator = await startEmulator();
  servers.push(emulator);
  const options = { upstreamUrl: emulator.url, nodeFlags: ["--cpu-prof", `--cpu-prof-dir=${args.dir}`, ...args["node-flag"]], env };
  const server = args.target === "gateway" ? await startGateway(options) : await startBaseline(options);
  servers.push(server);
  const spec = { url: server.url + load.path, method: load.method, body: "body" in load ? load.body : undefined, connections: load.connections };
  const warm = await runLoad({ ...spec, duration: 3 });
  const result = await runLoad({ ...spec, duration: Number(args.duration) });
  answers = warm.completed + result.completed;
  console.log(`${args.target} ${args.scenario}: ${result.rps.toFixed(1)} rps, p50 ${result.p50.toFixed(1)} ms, p99 ${result.p99.toFixed(1)} ms, ${result.failures} failed`);
} finally {
  for (const server of servers.reverse()) await server.stop();
}

const written = readdirSync(args.dir)
  .filter((name) => name.endsWith(".cpuprofile"))
  .map((name) => path.join(args.dir, name))
  .filter((file) => statSync(file).mtimeMs >= startedAt)
  .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
const newest = written[0];
if (!newest) throw new Error(`no .cpuprofile was written to ${args.dir}`);
console.log(`profile: ${newest}\n`);
const profile = JSON.parse(readFileSync(newest, "utf8")) as CpuProfile;
console.log(formatSummary(summarize(profile, Number(args.top)), answers));
console.log(formatDetails(profile, args.inclusive, args.callers));
