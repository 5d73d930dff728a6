/**
 * What each part of the gateway costs: the generate (or health) load against
 * the baseline and the gateway with variants of its environment, alternated
 * over rounds; prints rps, server CPU per answer and peak RSS for each.
 *
 *   tsx bench/ablate.ts [--scenario generate|health] [--duration 8] [--rounds 2] [--variant name:ENV1=a,ENV2=b]...
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
    : { path: "/api/generate", method: "POST" as const, body: GENERATE_BODY, connections: 16 };
const variants: [string, Record<string, string> | "baseline"][] = [["baseline", "baseline"], ["gateway", {}]];
for (const spec of args.variant) {
  const [name = spec, pairs = ""] = spec.split(":");
  variants.push([name, Object.fromEntries(pairs.split(",").map((pair) => [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)]))]);
}

ensureBuilds(false);
const results = new Map<string, { rps: number[]; cpu: number[]; rss: number[] }>();
const emulator = await startEmulator();
try {
  for (let round = 0; round < Number(args.rounds); round++) {
    for (const [name, env] of variants) {
      const server: Server = env === "baseline" ? await startBaseline({ upstreamUrl: emulator.url }) : await startGateway({ upstreamUrl: emulator.url, env });
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
