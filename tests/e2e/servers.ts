/** Where the e2e servers listen, the emulator's control endpoints, and extra gateways a spec starts. Loopback only. */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { nextStartArgs } from "../../scripts/next-start";
import { DIES_WITH_PARENT } from "../proc";

/**
 * A free loopback port, chosen once: the Playwright runner picks it when it
 * loads the config and puts it in the environment, which the workers it
 * starts inherit, so every process agrees; two runs at once never collide.
 */
function port(name: string): number {
  const given = process.env[name];
  if (given) return Number(given);
  // Synchronous, as the config is: a child process listens on port 0 and says which port it got.
  const script = "const s=require('node:net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})";
  const chosen = Number(execFileSync(process.execPath, ["-e", script], { encoding: "utf8" }).trim());
  process.env[name] = String(chosen);
  return chosen;
}

export const EMULATOR_PORT = port("E2E_EMULATOR_PORT");
export const GATEWAY_PORT = port("E2E_GATEWAY_PORT");
/** The security tests' second gateway (API keys, CORS) and their two frontends' origins. */
export const KEYED_PORT = port("E2E_KEYED_PORT");
export const LISTED_PORT = port("E2E_LISTED_PORT");
export const UNLISTED_PORT = port("E2E_UNLISTED_PORT");
/** The history tests' gateways: one that forgets jobs quickly, one without jobs. */
export const SHORT_TTL_PORT = port("E2E_SHORT_TTL_PORT");
export const NO_JOBS_PORT = port("E2E_NO_JOBS_PORT");
/** The main gateway's DATA_DIR: made once, as the ports are chosen, and removed by teardown.ts. */
function dataDirectory(): string {
  process.env.E2E_DATA_DIR ??= mkdtempSync(path.join(tmpdir(), "e2e-jobs-"));
  return process.env.E2E_DATA_DIR;
}
export const E2E_DATA_DIR = dataDirectory();

export const EMULATOR_URL = `http://127.0.0.1:${EMULATOR_PORT}`;
export const GATEWAY_URL = `http://127.0.0.1:${GATEWAY_PORT}`;
/** Per inference step: long enough to watch progress, short enough for a quick run. */
export const STEP_MS = 150;

export interface EmulatorStats {
  generateRequests: number;
  aborted: number;
  completed: number;
  active: number;
}

async function control(method: string, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${EMULATOR_URL}${path}`, {
    method,
    headers: body === undefined ? undefined : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${await response.text()}`);
  return response.json();
}

export interface StartedGateway {
  url: string;
  /** Its jobs' directory, removed by stop(). */
  dataDir: string;
  stop: () => Promise<void>;
}

/** Another built gateway on `port`, on the e2e emulator, with its own DATA_DIR; resolves once it answers. */
export async function startGateway(port: number, env: Record<string, string>): Promise<StartedGateway> {
  const root = path.resolve(import.meta.dirname, "../..");
  const dataDir = mkdtempSync(path.join(tmpdir(), "e2e-gateway-"));
  const child = spawn(process.execPath, [...DIES_WITH_PARENT, ...nextStartArgs("-p", String(port), "-H", "127.0.0.1")], {
    cwd: root,
    env: { ...process.env, NODE_ENV: "production", NEXT_TELEMETRY_DISABLED: "1", TEXT2IMAGE_SERVER_URL: EMULATOR_URL, DATA_DIR: dataDir, LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`the gateway on port ${port} exited:\n${output}`);
    }
    try {
      if ((await fetch(`${url}/api`)).ok) return { url, dataDir, stop };
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the gateway on port ${port} did not start:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export const emulator = {
  /** Clears the counts and the fault, and puts the step time back to STEP_MS. */
  reset: async () => {
    await control("POST", "/_emulator/reset");
    await control("PUT", "/_emulator/step", { ms: STEP_MS });
  },
  /** Each inference step takes `ms` from now on (until reset). */
  setStepMs: (ms: number) => control("PUT", "/_emulator/step", { ms }),
  stats: async () => (await control("GET", "/_emulator/stats")) as EmulatorStats,
  setFault: (fault: Record<string, unknown> | null) => control("PUT", "/_emulator/fault", fault),
  /** The emulator stops listening for `ms`, then comes back on the same port. */
  outage: (ms: number) => control("POST", "/_emulator/outage", { ms }),
};
