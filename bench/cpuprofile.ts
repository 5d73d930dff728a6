/**
 * Sums the self time of a V8 .cpuprofile (`node --cpu-prof`) per function,
 * per source file and per package, mapping bundled code (Next's compiled
 * runtime, the .next server chunks) back to its sources through the .map
 * files beside it.
 *
 *   tsx bench/cpuprofile.ts <file.cpuprofile> [--top 25] [--inclusive <text>]... [--callers <text>]... [--depth 8]
 *
 * --inclusive sums the time of stacks that hold a matching frame (what a
 * library costs with everything it calls); --callers shows the heaviest
 * stacks ending in a matching frame.
 */
import { existsSync, readFileSync } from "node:fs";
import { SourceMap } from "node:module";
import type { SourceMapPayload } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  /** Microseconds between samples; timeDeltas[i] precedes samples[i]. */
  timeDeltas: number[];
}

export interface Row {
  name: string;
  /** Self time in ms. */
  ms: number;
  /** Share of the busy (non-idle) time. */
  share: number;
}

export interface Summary {
  totalMs: number;
  idleMs: number;
  functions: Row[];
  files: Row[];
  packages: Row[];
}

const root = path.resolve(import.meta.dirname, "..");

/** Where a frame comes from, after source maps: an original file and line, a function name, and its package. */
interface Origin {
  name: string;
  file: string;
  line: number;
  pkg: string;
}

interface MapEntry {
  originalSource?: string;
  originalLine?: number;
  name?: string;
}

const maps = new Map<string, SourceMap | null>();

function sourceMapOf(file: string): SourceMap | null {
  let map = maps.get(file);
  if (map !== undefined) return map;
  map = null;
  const candidate = `${file}.map`;
  if (existsSync(candidate)) {
    try {
      map = new SourceMap(JSON.parse(readFileSync(candidate, "utf8")) as SourceMapPayload);
    } catch {
      map = null;
    }
  }
  maps.set(file, map);
  return map;
}

const origins = new Map<string, Origin>();

function origin(frame: CallFrame): Origin {
  const key = `${frame.url}:${frame.lineNumber}:${frame.columnNumber}:${frame.functionName}`;
  let found = origins.get(key);
  if (!found) {
    found = locate(frame);
    origins.set(key, found);
  }
  return found;
}

function locate(frame: CallFrame): Origin {
  const name = frame.functionName || "(anonymous)";
  if (!frame.url) return { name, file: name.startsWith("(") ? name : "(native)", line: 0, pkg: name.startsWith("(") ? name : "(native)" };
  if (frame.url.startsWith("node:")) return { name, file: frame.url, line: frame.lineNumber + 1, pkg: "node (internals)" };
  if (!frame.url.startsWith("file://") && !frame.url.startsWith("/")) return { name, file: frame.url, line: frame.lineNumber + 1, pkg: frame.url.split(":")[0] ?? frame.url };
  const generated = frame.url.startsWith("file://") ? fileURLToPath(frame.url) : frame.url;
  const map = sourceMapOf(generated);
  const entry = (map?.findEntry(frame.lineNumber, frame.columnNumber) ?? {}) as MapEntry;
  if (!entry.originalSource) return { name, file: relative(generated), line: frame.lineNumber + 1, pkg: packageOf(generated) };
  const source = resolveSource(generated, entry.originalSource);
  // Next's compiled runtime maps to its own src/ tree, which is not on disk: it stays Next's.
  const pkg = source.includes("node_modules/") || !generated.includes("node_modules/") ? packageOf(source) : packageOf(generated);
  const file = source.startsWith(root + "/") || source.startsWith("/") ? relative(source) : `${pkg}: ${source}`;
  return { name: entry.name ?? name, file, line: (entry.originalLine ?? 0) + 1, pkg };
}

/** A map's source as a path: Turbopack's `turbopack:///[project]/x` is under the root, others are relative to the map. */
function resolveSource(generated: string, source: string): string {
  const decoded = decodeURIComponent(source.replace(/\?.*$/, ""));
  const project = /^turbopack:\/\/\/\[project\]\/(.*)$/.exec(decoded);
  if (project?.[1] !== undefined) return path.join(root, project[1]);
  const stripped = decoded.replace(/^(turbopack|webpack):\/\/\/?(\[[^\]]+\]\/)?/, "");
  if (stripped.startsWith("/")) return stripped;
  const resolved = path.resolve(path.dirname(generated), stripped);
  return existsSync(resolved) || resolved.includes("node_modules/") ? resolved : stripped;
}

function relative(file: string): string {
  return file.startsWith(root + "/") ? file.slice(root.length + 1) : file;
}

/** The package a file belongs to (node_modules/<pkg>, Next's bundled ones as next/compiled/<pkg>), else the project folder. */
function packageOf(file: string): string {
  const nm = file.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const parts = file.slice(nm + "node_modules/".length).split("/");
    const pkg = parts[0]?.startsWith("@") ? `${parts[0]}/${parts[1] ?? ""}` : (parts[0] ?? file);
    const compiled = parts.indexOf("compiled");
    return pkg === "next" && compiled >= 0 && parts[compiled + 1] && parts[compiled + 1] !== "next-server" ? `next/compiled/${parts[compiled + 1]}` : pkg;
  }
  const inProject = relative(file);
  if (inProject.startsWith("/") || inProject === file) return file.startsWith("/") ? "(other file)" : `next (src)`;
  return `project: ${inProject.split("/")[0] ?? inProject}`;
}

export function summarize(profile: CpuProfile, top = 25): Summary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  // The time until the next sample is the sampled frame's: timeDeltas[i + 1] belongs to samples[i].
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] ?? -1;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
  }
  const functions = new Map<string, number>();
  const files = new Map<string, number>();
  const packages = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    totalUs += us;
    if (node.callFrame.functionName === "(idle)") {
      idleUs += us;
      continue;
    }
    const where = origin(node.callFrame);
    const add = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + us);
    add(functions, where.line > 0 ? `${where.name}  ${where.file}:${where.line}` : `${where.name}  ${where.file}`);
    add(files, where.file);
    add(packages, where.pkg);
  }
  const busyUs = totalUs - idleUs;
  const rows = (map: Map<string, number>) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: us / 1000, share: busyUs > 0 ? us / busyUs : 0 }));
  return { totalMs: totalUs / 1000, idleMs: idleUs / 1000, functions: rows(functions), files: rows(files), packages: rows(packages) };
}

/** A frame as the summaries name it: "function  file:line". */
function label(frame: CallFrame): string {
  const where = origin(frame);
  return where.line > 0 ? `${where.name}  ${where.file}:${where.line}` : `${where.name}  ${where.file}`;
}

/** Each sample's node and the time it stands for (see summarize). */
function weightedSamples(profile: CpuProfile): [number, number][] {
  return profile.samples.map((id, i) => [id, profile.timeDeltas[i + 1] ?? 0]);
}

function parents(profile: CpuProfile): Map<number, number> {
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  return parent;
}

/**
 * Inclusive time: for each pattern, the share of busy time whose stack holds
 * a frame whose label contains it (each sample counted once per pattern).
 */
export function inclusive(profile: CpuProfile, patterns: string[]): Row[] {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = parents(profile);
  const matched = new Map<number, Set<string>>();
  const matchesOf = (id: number): Set<string> => {
    let found = matched.get(id);
    if (found) return found;
    const node = byId.get(id);
    const up = parent.get(id);
    found = new Set(up === undefined ? [] : matchesOf(up));
    if (node) {
      const text = label(node.callFrame);
      for (const pattern of patterns) if (text.includes(pattern)) found.add(pattern);
    }
    matched.set(id, found);
    return found;
  };
  const totals = new Map(patterns.map((p) => [p, 0]));
  let busy = 0;
  for (const [id, us] of weightedSamples(profile)) {
    if (byId.get(id)?.callFrame.functionName === "(idle)") continue;
    busy += us;
    for (const pattern of matchesOf(id)) totals.set(pattern, (totals.get(pattern) ?? 0) + us);
  }
  return patterns.map((name) => ({ name, ms: (totals.get(name) ?? 0) / 1000, share: busy > 0 ? (totals.get(name) ?? 0) / busy : 0 }));
}

/** The heaviest call chains (leaf first, `depth` frames) ending in a frame whose label contains `pattern`. */
export function callers(profile: CpuProfile, pattern: string, depth = 8, top = 5): Row[] {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = parents(profile);
  const chains = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of weightedSamples(profile)) {
    const node = byId.get(id);
    if (!node || node.callFrame.functionName === "(idle)") continue;
    busy += us;
    if (!label(node.callFrame).includes(pattern)) continue;
    const chain: string[] = [];
    for (let at: number | undefined = id; at !== undefined && chain.length < depth; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (frame && frame.functionName !== "(root)") chain.push(label(frame));
    }
    const key = chain.join("\n      ← ");
    chains.set(key, (chains.get(key) ?? 0) + us);
  }
  return [...chains.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, us]) => ({ name, ms: us / 1000, share: busy > 0 ? us / busy : 0 }));
}

/** The summary as text; with `answers` (requests served while profiling), also the time per answer. */
export function formatSummary(summary: Summary, answers?: number): string {
  const busy = summary.totalMs - summary.idleMs;
  const line = (row: Row) =>
    `${(row.share * 100).toFixed(1).padStart(6)}%  ${row.ms.toFixed(0).padStart(7)} ms` +
    (answers ? `  ${((row.ms * 1000) / answers).toFixed(0).padStart(6)} µs/answer` : "") +
    `  ${row.name}`;
  const section = (title: string, rows: Row[]) => [title, ...rows.map(line), ""];
  return [
    `profiled ${(summary.totalMs / 1000).toFixed(1)} s, busy ${(busy / 1000).toFixed(1)} s (${((busy / summary.totalMs) * 100).toFixed(0)}%); shares are of the busy time` +
      (answers ? `; ${answers} answers, ${((busy * 1000) / answers).toFixed(0)} µs busy per answer` : ""),
    "",
    ...section("self time by function", summary.functions),
    ...section("self time by file", summary.files),
    ...section("self time by package", summary.packages),
  ].join("\n");
}

/** The inclusive times and caller chains asked for, as text. */
export function formatDetails(profile: CpuProfile, patterns: string[], callerPatterns: string[], depth = 8): string {
  const out: string[] = [];
  if (patterns.length > 0) {
    out.push("inclusive time (stacks holding a matching frame)");
    for (const row of inclusive(profile, patterns)) out.push(`${(row.share * 100).toFixed(1).padStart(6)}%  ${row.ms.toFixed(0).padStart(7)} ms  ${row.name}`);
    out.push("");
  }
  for (const pattern of callerPatterns) {
    out.push(`heaviest stacks ending in "${pattern}"`);
    for (const row of callers(profile, pattern, depth)) out.push(`${(row.share * 100).toFixed(1).padStart(6)}%  ${row.ms.toFixed(0).padStart(7)} ms  ${row.name}`);
    out.push("");
  }
  return out.join("\n");
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      top: { type: "string", default: "25" },
      inclusive: { type: "string", multiple: true, default: [] },
      callers: { type: "string", multiple: true, default: [] },
      depth: { type: "string", default: "8" },
    },
  });
  const [file] = positionals;
  if (!file) {
    console.error("usage: tsx bench/cpuprofile.ts <file.cpuprofile> [--top 25] [--inclusive <text>]... [--callers <text>]... [--depth 8]");
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  console.log(formatSummary(summarize(profile, Number(values.top))));
  console.log(formatDetails(profile, values.inclusive, values.callers, Number(values.depth)));
}
