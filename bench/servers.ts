/**
 * The processes a benchmark runs: builds when missing, the emulator, the built
 * gateway and the baseline app under `next start`, and the RSS of whichever
 * process listens on a server's port.
 */
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { nextStartArgs } from "../scripts/next-start";

export const root = path.resolve(import.meta.dirname, "..");
export const baselineDir = path.join(root, "bench/baseline");
const nextBin = path.join(root, "node_modules/next/dist/bin/next");

/** The fixed request every generate run sends: a fixed seed, so the emulator serves its cached image. */
export const GENERATE_BODY = JSON.stringify({ prompt: "benchmark: a red fox in snow", seed: 42, width: 1024, height: 1024, num_inference_steps: 9 });

const quietEnv = { NEXT_TELEMETRY_DISABLED: "1" };

/** Builds the gateway and the baseline app when their build is missing (or always, with `force`). */
export function ensureBuilds(force: boolean): void {
  if (force || !existsSync(path.join(root, ".next/BUILD_ID"))) build("gateway", []);
  if (force || !existsSync(path.join(baselineDir, ".next/BUILD_ID"))) build("baseline", [baselineDir]);
  // Next writes a next-env.d.ts that imports the baseline's .next types; the root
  // tsconfig includes bench/**, so it would pull them into the gateway's type check
  // (and break it once .next is gone). `next start` does not need it.
  rmSync(path.join(baselineDir, "next-env.d.ts"), { force: true });
}

function build(name: string, args: string[]): void {
  console.log(`bench: building the ${name} (next build ${args.map((a) => path.relative(root, a)).join(" ")})`);
  const result = spawnSync(process.execPath, [nextBin, "build", ...args], {
    cwd: root,
    env: { ...process.env, ...quietEnv },
    stdio: "inherit",
  });
  if (result.status !== 0) throw new Error(`next build of the ${name} failed (exit ${result.status ?? result.signal ?? "?"})`);
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (typeof address !== "object" || address === null) throw new Error("no free port");
  return address.port;
}

export interface Server {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  /** The process that listens on `port` (`next start` may serve from a child). */
  readonly pid: number;
  /** Where its stdout and stderr go. */
  readonly logPath: string;
  stop(): Promise<void>;
}

interface Launch {
  name: string;
  args: string[];
  env: Record<string, string>;
  port: number;
  /** A path that answers 200 once the server is ready. */
  readyPath: string;
}

/**
 * Starts a server with its output in a file (a pipe the busy benchmark
 * process reads late would block a logger that writes synchronously).
 */
async function launch({ name, args, env, port, readyPath }: Launch): Promise<Server> {
  const logPath = path.join(tmpdir(), `text2image-bench-${name}-${process.pid}.log`);
  const log = openSync(logPath, "w");
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ...quietEnv, ...env },
    stdio: ["ignore", log, log],
  });
  closeSync(log);
  const exited = new Promise<void>((resolve) => child.once("exit", () => { resolve(); }));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited before it was ready; its output (${logPath}):\n${readFileSync(logPath, "utf8").slice(-4000)}`);
    }
    if (await answers200(url + readyPath)) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${name} did not answer ${readyPath} within 60 s; see ${logPath}`);
    }
    await sleep(100);
  }
  return {
    name,
    url,
    port,
    pid: listeningPid(child, port),
    logPath,
    stop: () => stop(child, exited),
  };
}

async function answers200(url: string): Promise<boolean> {
  try {
    const response = await fetch(url);
    await response.arrayBuffer();
    return response.status === 200;
  } catch {
    return false;
  }
}

async function stop(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The emulator with zero latency and the fixed noisy 1024×1024 image (≈1.4 MB of JSON). */
export async function startEmulator(): Promise<Server> {
  const port = await freePort();
  return launch({
    name: "emulator",
    args: ["--import", "tsx", path.join(root, "emulator/main.ts")],
    env: {
      EMULATOR_PORT: String(port),
      EMULATOR_HOST: "127.0.0.1",
      EMULATOR_STEP_MS: "0",
      EMULATOR_IMAGE: "noise",
      // Room for every benchmark connection: the emulator is never the one that queues or refuses.
      EMULATOR_SLOTS: "64",
      EMULATOR_MAX_QUEUE: "256",
    },
    port,
    readyPath: "/health",
  });
}

export interface NextOptions {
  upstreamUrl: string;
  /** Extra node flags, before the next binary (e.g. --cpu-prof). */
  nodeFlags?: string[];
  env?: Record<string, string>;
}

/** The built gateway as `npm start` runs it, with its default configuration. */
export async function startGateway({ upstreamUrl, nodeFlags = [], env = {} }: NextOptions): Promise<Server> {
  const port = await freePort();
  return launch({
    name: "gateway",
    args: [...nodeFlags, ...nextStartArgs("-p", String(port), "-H", "127.0.0.1")],
    env: { NODE_ENV: "production", TEXT2IMAGE_SERVER_URL: upstreamUrl, ...env },
    port,
    readyPath: "/api/health",
  });
}

/** The bare Next.js app of bench/baseline under `next start`. */
export async function startBaseline({ upstreamUrl, nodeFlags = [], env = {} }: NextOptions): Promise<Server> {
  const port = await freePort();
  return launch({
    name: "baseline",
    args: [...nodeFlags, nextBin, "start", baselineDir, "-p", String(port), "-H", "127.0.0.1"],
    env: { NODE_ENV: "production", TEXT2IMAGE_SERVER_URL: upstreamUrl, ...env },
    port,
    readyPath: "/api/health",
  });
}

/**
 * The pid among `child` and its descendants that holds the socket listening
 * on `port` (from /proc/net/tcp*); `child`'s own pid when /proc says nothing.
 */
function listeningPid(child: ChildProcess, port: number): number {
  const own = child.pid ?? 0;
  const inodes = listeningInodes(port);
  if (inodes.size === 0) return own;
  for (const pid of [own, ...descendants(own)]) {
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const match = /^socket:\[(\d+)\]$/.exec(safeReadlink(`/proc/${pid}/fd/${fd}`));
        if (match?.[1] && inodes.has(match[1])) return pid;
      }
    } catch {
      // the process is gone or not ours to read
    }
  }
  return own;
}

function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      // local_address is "ADDR:PORT" in hex; state 0A is LISTEN; field 9 is the inode.
      if (fields[1]?.endsWith(`:${hexPort}`) && fields[3] === "0A" && fields[9]) inodes.add(fields[9]);
    }
  }
  return inodes;
}

function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[] = [];
  try {
    entries = readdirSync("/proc").filter((entry) => /^\d+$/.test(entry));
  } catch {
    return [];
  }
  for (const entry of entries) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift() ?? -1) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

function safeReadlink(file: string): string {
  try {
    return readlinkSync(file);
  } catch {
    return "";
  }
}

/** A field of /proc/<pid>/status in bytes (VmRSS, VmHWM), or undefined off Linux. */
export function procStatusBytes(pid: number, field: "VmRSS" | "VmHWM"): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match?.[1] ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * CPU time (user + system) a process has used, in seconds, from /proc/<pid>/stat
 * (in USER_HZ, 100 per second on Linux); undefined off Linux. On a shared
 * machine the CPU a server spends per request is steadier than its throughput.
 */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after "(comm)": state is the 3rd field, utime the 14th and stime the 15th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** Samples a process's VmRSS every `intervalMs`; `stop()` gives the peak seen (undefined off Linux). */
export function sampleRss(pid: number, intervalMs = 100): { stop(): number | undefined } {
  let peak: number | undefined;
  const sample = () => {
    const rss = procStatusBytes(pid, "VmRSS");
    if (rss !== undefined) peak = Math.max(peak ?? 0, rss);
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return peak;
    },
  };
}
