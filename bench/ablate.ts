/**
 * What each part of the gateway costs: the generate (or health) load against
 * the baseline and the gateway with variants of its environment, alternated
 * over rounds; prints rps, server CPU per answer and peak RSS for each.
 *
 *   tsx bench/ablate.ts [--scenario generate|health|stream] [--duration 8] [--rounds 2] [--variant name:ENV1=a,--node-flag=b]...
 *
 * A variant's entries that start with `--` are Node flags (`semi16:--max-semi-space-size=16`);
 * one replaces the start script's flag of the same name.
 */
import { parseArgs } from "node:util";
import { runLoad } from "./load";
import { GENERATE_BODY, cpuSeconds, ensureBuilds, sampleRss, startBaseline, startEmulator, startGateway } from "./servers";
import type { Server } from "./servers";

const { values: args } = parseArgs({
  options: {
    scenario: { type: "string", default: "generate" },
    duration: { type: "string", default: "8" },
    rounds: { type: "string", default: "2" },
    variant: { type: "string", multiple: true, default: [] },
  },
});
const load =
  args.scenario === "health"
    ? { path: "/api/health", method: "GET" as const, body: undefined, connections: 50 }
    : { path: args.scenario === "stream" ? "/api/generate-stream" : "/api/generate", method: "POST" as const, body: GENERATE_BODY, connections: 16 };
interface Variant {
  env: Record<string, string>;
  nodeFlags: string[];
}
// The baseline app has no stream route: a stream ablation compares gateways only.
const variants: [string, Variant | "baseline"][] = [
  ...(args.scenario === "stream" ? [] : [["baseline", "baseline"] as [string, "baseline"]]),
  ["gateway", { env: {}, nodeFlags: [] }],
];
for (const spec of args.variant) {
  const [name = spec, entries = ""] = spec.split(":");
  const variant: Variant = { env: {}, nodeFlags: [] };
  for (const entry of entries.split(",").filter(Boolean)) {
    if (entry.startsWith("--")) variant.nodeFlags.push(entry);
    else variant.env[entry.slice(0, entry.indexOf("="))] = entry.slice(entry.indexOf("=") + 1);
  }
  variants.push([name, variant]);
}

ensureBuilds(false);
const results = new Map<string, { rps: number[]; cpu: number[]; rss: number[] }>();
const emulator = await startEmulator();
try {
  for (let round = 0; round < Number(args.rounds); round++) {
    for (const [name, variant] of variants) {
      const server: Server = variant === "baseline" ? await startBaseline({ upstreamUrl: emulator.url }) : await startGateway({ upstreamUrl: emulator.url, ...variant });
      try {
        const spec = { url: server.url + load.path, method: load.method, body: load.body, connections: load.connections };
        await runLoad({ ...spec, duration: 3 });
        const before = cpuSeconds(server.pid) ?? 0;
        const rss = sampleRss(server.pid);
        const result = await runLoad({ ...spec, duration: Number(args.duration) });
        const peakMb = (rss.stop() ?? 0) / 2 ** 20;
        const cpuMs = (((cpuSeconds(server.pid) ?? 0) - before) * 1000) / result.completed;
        const entry = results.get(name) ?? { rps: [], cpu: [], rss: [] };
        entry.rps.push(result.rps);
        entry.cpu.push(cpuMs);
        entry.rss.push(peakMb);
        results.set(name, entry);
        console.log(`${name.padEnd(16)} ${result.rps.toFixed(1).padStart(7)} rps  CPU ${cpuMs.toFixed(2)} ms/answer  peak RSS ${peakMb.toFixed(0)} MB  ${result.failures} failed`);
      } finally {
        await server.stop();
      }
    }
  }
} finally {
  await emulator.stop();
}
const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
const base = results.get("baseline");
for (const [name, { rps, cpu, rss }] of results) {
  const times = (values: number[], of: number[] | undefined) => (of ? `${(mean(values) / mean(of)).toFixed(2)}×` : "?");
  console.log(
    `${name.padEnd(16)} mean ${mean(rps).toFixed(1).padStart(7)} rps (${times(rps, base?.rps)})  CPU ${mean(cpu).toFixed(2)} ms/answer (${times(cpu, base?.cpu)})  peak RSS ${mean(rss).toFixed(0)} MB (${times(rss, base?.rss)})`,
  );
}
