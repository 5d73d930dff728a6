/**
 * The processes a benchmark runs: builds when missing, the emulator, the built
 * gateway and the baseline app under `next start`, and the RSS of whichever
 * process listens on a server's port.
 */
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { nextStartArgs } from "../scripts/next-start";
import { freePort, pidListeningOn, residentBytes } from "../tests/proc";

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
  const logPath = path.join(tmpdir(), `text2image-bench-${name}-${process.pid}-${port}.log`);
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
    pid: pidListeningOn(child.pid ?? 0, port),
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

/** The emulator with zero latency and the fixed noisy 1024×1024 image (≈1.4 MB of JSON); `env` changes what it makes. */
export async function startEmulator(env: Record<string, string> = {}): Promise<Server> {
  const port = await freePort();
  return launch({
    name: "emulator",
    args: ["--import", "tsx", path.join(root, "emulator/main.ts")],
    env: {
      EMULATOR_PORT: String(port),
      EMULATOR_HOST: "127.0.0.1",
      EMULATOR_STEP_MS: "0",
      EMULATOR_IMAGE: "noise",
      // PNG noise: the 1.49 MB answer the figures in README.md were measured with (the default JPEG is smaller).
      EMULATOR_IMAGE_FORMAT: "png",
      // Room for every benchmark connection: the emulator is never the one that queues or refuses.
      EMULATOR_SLOTS: "64",
      EMULATOR_MAX_QUEUE: "256",
      ...env,
    },
    port,
    readyPath: "/health",
  });
}

export interface NextOptions {
  upstreamUrl: string;
  /** Extra node flags, before the next binary (e.g. --cpu-prof); for the gateway, one replaces the start script's flag of the same name. */
  nodeFlags?: string[];
  env?: Record<string, string>;
}

/** The built gateway as `npm start` runs it, with its default configuration. */
export async function startGateway({ upstreamUrl, nodeFlags = [], env = {} }: NextOptions): Promise<Server> {
  const port = await freePort();
  return launch({
    name: "gateway",
    args: [...nodeFlags, ...nextStartArgs("-p", String(port), "-H", "127.0.0.1").filter((arg) => !replaced(arg, nodeFlags))],
    env: { NODE_ENV: "production", TEXT2IMAGE_SERVER_URL: upstreamUrl, ...env },
    port,
    readyPath: "/api/health",
  });
}

/** Whether `arg` is a Node flag that one of `nodeFlags` sets anew. */
function replaced(arg: string, nodeFlags: string[]): boolean {
  const name = (flag: string) => flag.split("=")[0];
  return arg.startsWith("--") && nodeFlags.some((flag) => flag.startsWith("--") && name(flag) === name(arg));
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
    const rss = residentBytes(pid);
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
