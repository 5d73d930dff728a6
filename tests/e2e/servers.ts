/** Where the e2e servers listen, and the emulator's control endpoints. Loopback only. */
import { execFileSync } from "node:child_process";

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

export const emulator = {
  reset: () => control("POST", "/_emulator/reset"),
  stats: async () => (await control("GET", "/_emulator/stats")) as EmulatorStats,
  setFault: (fault: Record<string, unknown> | null) => control("PUT", "/_emulator/fault", fault),
  /** The emulator stops listening for `ms`, then comes back on the same port. */
  outage: (ms: number) => control("POST", "/_emulator/outage", { ms }),
};
