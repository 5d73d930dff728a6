/** Where the e2e servers listen, and the emulator's control endpoints. Loopback only. */
export const EMULATOR_PORT = 18001;
export const GATEWAY_PORT = 13000;
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
