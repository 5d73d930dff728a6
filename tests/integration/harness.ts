/**
 * Starts the built gateway (`next start`, as production runs it) on a free
 * port, with its own environment. `npm test` builds it first.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { WebSocket } from "undici";
import type { MessageEvent } from "undici";
import { expect } from "vitest";
import { nextStartArgs } from "../../scripts/next-start";
import { DIES_WITH_PARENT, freePort, pidListeningOn, residentBytes as vmRss } from "../proc";

export { freePort } from "../proc";

const root = path.resolve(import.meta.dirname, "../..");

export interface Gateway {
  readonly url: string;
  /** The DATA_DIR it runs with: the one its env named, or its own. */
  readonly dataDir: string;
  readonly process: ChildProcess;
  /** Everything the server printed so far. */
  output(): string;
  stop(): Promise<void>;
}

/** What the build is made of: a file changed after it means the tests would run old code. */
const BUILD_INPUTS = ["app", "lib", "proxy.vercel.ts", "instrumentation.ts", "next.config.mjs", "package.json", "package-lock.json"];

/** The first build input newer than the build, if any. */
function newerThanBuild(builtAt: number): string | undefined {
  for (const input of BUILD_INPUTS) {
    const full = path.join(root, input);
    if (!existsSync(full)) continue;
    const files = statSync(full).isDirectory() ? readdirSync(full, { recursive: true, encoding: "utf8" }).map((file) => path.join(full, file)) : [full];
    const newer = files.find((file) => statSync(file).mtimeMs > builtAt);
    if (newer) return path.relative(root, newer);
  }
  return undefined;
}

export interface StartOptions {
  /**
   * `api` (default): ready once GET /api answers, which loads that route.
   * `listening`: once the port takes a connection, with no route loaded, as
   * a fresh process meets its first traffic.
   */
  readyWhen?: "api" | "listening";
}

/**
 * Starts a gateway; without a DATA_DIR in `env` it gets a fresh one of its
 * own, removed by `stop()`: two processes on one DATA_DIR damage each other's jobs.
 */
export async function startGateway(env: Record<string, string>, { readyWhen = "api" }: StartOptions = {}): Promise<Gateway> {
  const buildId = path.join(root, ".next/BUILD_ID");
  if (!existsSync(buildId)) throw new Error("Build the gateway first: npm run build (npm test builds it)");
  const changed = newerThanBuild(statSync(buildId).mtimeMs);
  if (changed) throw new Error(`${changed} changed after the last build, which these tests would not see: npm run build (npm test builds first)`);
  // A free port is found, then bound by the child: another process may take it between the two.
  for (let attempt = 1; ; attempt++) {
    try {
      return await launch(env, readyWhen);
    } catch (error) {
      if (!(error instanceof PortTaken) || attempt === 3) throw error;
    }
  }
}

class PortTaken extends Error {}

async function launch(env: Record<string, string>, readyWhen: StartOptions["readyWhen"]): Promise<Gateway> {
  const port = await freePort();
  const dataDir = env.DATA_DIR ?? mkdtempSync(path.join(tmpdir(), "gateway-data-"));
  const ownDataDir = env.DATA_DIR === undefined ? dataDir : undefined;
  const child = spawn(process.execPath, [...DIES_WITH_PARENT, ...nextStartArgs("-p", String(port), "-H", "127.0.0.1")], {
    cwd: root,
    env: { ...process.env, NEXT_TELEMETRY_DISABLED: "1", NODE_ENV: "production", ...(ownDataDir && { DATA_DIR: ownDataDir }), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      resolve();
    });
  });

  const removeDataDir = () => {
    if (ownDataDir) rmSync(ownDataDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      removeDataDir();
      throw new (output.includes("EADDRINUSE") ? PortTaken : Error)(`gateway exited with ${child.exitCode}:\n${output}`);
    }
    if (readyWhen === "listening" ? await accepts(port) : await answersOk(`${url}/api`)) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      await exited;
      removeDataDir();
      throw new Error(`gateway did not start:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  // Ready, but whose answer was it? Another process that took the port first answers as well.
  try {
    pidListeningOn(child.pid ?? -1, port);
  } catch (error) {
    child.kill("SIGKILL");
    await exited;
    removeDataDir();
    throw new PortTaken(`port ${port} is another process's`, { cause: error });
  }

  return {
    url,
    dataDir,
    process: child,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGKILL");
      await exited;
      removeDataDir();
    },
  };
}

async function answersOk(url: string): Promise<boolean> {
  try {
    const response = await fetch(url);
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false; // not listening yet
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => {
      resolve(false);
    });
  });
}

export interface RawAnswer {
  status: number;
  headers: string;
  body: string;
  /** Whether the server closed the connection (else the wait ran out). */
  closed: boolean;
}

/**
 * One raw HTTP/1.1 exchange, for what fetch refuses to send (TRACE, the
 * asterisk form, Upgrade, two Host headers): `head` is the request line and
 * header lines without the final blank line. Resolves when the server closes
 * the connection, or after `waitMs` with `closed` false.
 */
export function rawExchange(gateway: Gateway, head: string, waitMs = 5000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(new URL(gateway.url).port), "127.0.0.1");
    let text = "";
    const done = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      const [headers = "", body = ""] = text.split("\r\n\r\n");
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(headers)?.[1]), headers, body, closed });
    };
    const timer = setTimeout(() => {
      done(false);
    }, waitMs);
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => (text += chunk));
    socket.on("error", reject);
    socket.on("end", () => {
      done(true);
    });
    socket.write(`${head}\r\n\r\n`);
  });
}

/** Polls `check` until it returns true or `timeoutMs` passes; returns whether it did. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return check();
}

export interface JsonAnswer {
  status: number;
  headers: Headers;
  body: unknown;
}

/**
 * The GPU server's own image for a generate body, asked of it directly: its
 * `image_base64` (a data URI) as it sent it, what the gateway must pass on
 * byte for byte. A string body is sent as is (a 20-digit seed keeps its digits).
 */
export async function directImage(serverUrl: string, body: string | Record<string, unknown>): Promise<string> {
  const response = await fetch(`${serverUrl}/generate`, { method: "POST", body: typeof body === "string" ? body : JSON.stringify(body), headers: { "content-type": "application/json" } });
  return ((await response.json()) as { image_base64: string }).image_base64;
}

/** A request whose answer is read as JSON (or kept as text when it is not). */
export async function call(url: string, init: RequestInit = {}): Promise<JsonAnswer> {
  const response = await fetch(url, init);
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: the test sees the text
  }
  return { status: response.status, headers: response.headers, body };
}

/** POST a JSON body to the gateway's generate endpoint (or another path). */
export function postJson(url: string, body: unknown, init: RequestInit = {}): Promise<JsonAnswer> {
  return call(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    ...init,
  });
}

export interface ReceivedEvent {
  /** Milliseconds since the request was sent. */
  at: number;
  /** The parsed `data:` JSON, or undefined for a comment. */
  data: Record<string, unknown> | undefined;
  comment: string | undefined;
  /** The event's `id:` line, if it had one. */
  id?: string;
}

/**
 * Reads a server-sent event stream to its end, noting when each event
 * arrived; or, after `stopAfter` events with data, hangs up (a client that
 * disconnects).
 */
export async function readEvents(response: Response, sentAt: number, stopAfter = Infinity): Promise<ReceivedEvent[]> {
  const events: ReceivedEvent[] = [];
  const decoder = new TextDecoder();
  let buffered = "";
  const reader = response.body?.getReader();
  if (!reader) return events;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const at = performance.now() - sentAt;
      if (block.startsWith(":")) {
        events.push({ at, data: undefined, comment: block.slice(1).trim() });
        continue;
      }
      const id = /^id: ?(.*)$/m.exec(block)?.[1];
      const data = /^data: ?(.*)$/m.exec(block)?.[1] ?? "";
      events.push({ at, data: JSON.parse(data) as Record<string, unknown>, comment: undefined, ...(id !== undefined && { id }) });
      if (events.filter((event) => event.data).length >= stopAfter) {
        await reader.cancel();
        return events;
      }
    }
  }
  return events;
}

/** POSTs to a stream endpoint and reads every event. */
export async function streamGenerate(url: string, body: unknown, init: RequestInit = {}) {
  const sentAt = performance.now();
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    ...init,
  });
  const isStream = response.headers.get("content-type")?.startsWith("text/event-stream") ?? false;
  const events = isStream ? await readEvents(response, sentAt) : [];
  const json = isStream ? undefined : ((await response.json()) as unknown);
  return { response, json, events, types: events.filter((event) => event.data).map((event) => event.data?.type) };
}

/** The gateway's own load, as GET /api/health reports it. */
export async function gatewayLoad(url: string): Promise<{ in_flight: number; queued: number }> {
  const health = (await call(`${url}/api/health`)).body as { in_flight: number; queued: number };
  return { in_flight: health.in_flight, queued: health.queued };
}

/** Waits until the gateway has nothing in flight and nothing queued; returns whether it got there. */
export function waitIdle(url: string, timeoutMs = 5000): Promise<boolean> {
  return eventually(async () => {
    const load = await gatewayLoad(url);
    return load.in_flight === 0 && load.queued === 0;
  }, timeoutMs);
}

/** A small generation every test may use to see the gateway still serves. */
export const PROBE_BODY = { prompt: "still serving", width: 256, height: 256, num_inference_steps: 6 };

/**
 * The end state every fault must leave: no slot taken and nothing queued (per
 * /api/health), no connection to the GPU server left open (when the emulator
 * is given), and the gateway still answering. By default "answering" is a
 * generation that succeeds on both /api/generate and /api/generate-stream;
 * a gateway whose GPU server is down passes its own `probe`.
 */
export async function expectIdleAndServing(
  gateway: Gateway,
  options: { emulator?: { stats(): { active: number } }; probe?: () => Promise<void> } = {},
): Promise<void> {
  expect(await waitIdle(gateway.url), "in_flight and queued back to 0").toBe(true);
  const { emulator } = options;
  if (emulator) expect(await eventually(() => emulator.stats().active === 0), "no upstream request left open").toBe(true);
  if (options.probe) {
    await options.probe();
  } else {
    const plain = await postJson(`${gateway.url}/api/generate`, PROBE_BODY);
    expect(plain.status, "a generation after the fault").toBe(200);
    expect((plain.body as { image_base64?: unknown }).image_base64).toMatch(/^data:image\/jpeg;base64,/);
    const stream = await streamGenerate(`${gateway.url}/api/generate-stream`, PROBE_BODY);
    expect(stream.types.at(-1), "a stream after the fault").toBe("complete");
  }
  expect(await waitIdle(gateway.url), "idle after the probe").toBe(true);
  expect(gateway.process.exitCode, "the server is still running").toBeNull();
}

/** What a crash or an unhandled failure leaves in the server's output: none of it may appear. */
export const CRASH_SIGNS = /unhandledRejection|uncaughtException|Invalid state|\w*Error: |^\s+at \S.*:\d+:\d+\)?$/m;

/** Asserts the server printed no crash, unhandled rejection or stack trace. */
export function expectCleanOutput(gateway: Gateway): void {
  const match = CRASH_SIGNS.exec(gateway.output());
  const context = match ? gateway.output().slice(Math.max(0, match.index - 400), match.index + 800) : "";
  expect(match === null, `the server log shows a failure:\n${context}`).toBe(true);
}

/** The process that listens on the gateway's port (see tests/proc.ts). */
export function listeningPid(gateway: Gateway): number {
  const root = gateway.process.pid;
  if (root === undefined) throw new Error("the gateway has no pid");
  return pidListeningOn(root, Number(new URL(gateway.url).port));
}

/** Resident memory of a running process in bytes (VmRSS). */
export function residentBytes(pid: number): number {
  const bytes = vmRss(pid);
  if (bytes === undefined) throw new Error(`no VmRSS for process ${pid}`);
  return bytes;
}

export interface GatewayExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Milliseconds from the signal to the exit. */
  afterMs: number;
}

/**
 * Sends `signal` to the gateway's process at once and resolves with how it
 * exited; rejects if it still runs after `timeoutMs` (then `stop()` kills it).
 */
export async function signalGateway(gateway: Gateway, signal: NodeJS.Signals = "SIGTERM", timeoutMs = 45_000): Promise<GatewayExit> {
  const child = gateway.process;
  const sentAt = performance.now();
  const exited = new Promise<GatewayExit>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode, afterMs: 0 });
    child.once("exit", (code, exitSignal) => {
      resolve({ code, signal: exitSignal, afterMs: performance.now() - sentAt });
    });
  });
  child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`the gateway still runs ${timeoutMs} ms after ${signal}:\n${gateway.output()}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A full garbage collection in the gateway's server process, through the V8
 * inspector (HeapProfiler.collectGarbage): memory read after it is what the
 * process holds, not what V8 has yet to collect. The gateway must have been
 * started with `NODE_OPTIONS=--inspect-port=127.0.0.1:0`; SIGUSR1 then opens
 * the inspector on a free loopback port, which Node prints.
 */
export async function collectGarbage(gateway: Gateway, pid: number): Promise<void> {
  const announced = /Debugger listening on (ws:\/\/127\.0\.0\.1:\d+\/\S+)/;
  if (!announced.test(gateway.output())) process.kill(pid, "SIGUSR1");
  expect(await eventually(() => announced.test(gateway.output())), "the inspector opened").toBe(true);
  const url = announced.exec(gateway.output())?.[1] as string;
  const socket = new WebSocket(url);
  try {
    await new Promise((resolve, reject) => {
      socket.addEventListener("open", resolve, { once: true });
      socket.addEventListener("error", reject, { once: true });
    });
    for (let id = 1; id <= 2; id++) {
      const reply = new Promise<void>((resolve) => {
        const onMessage = (event: MessageEvent) => {
          if ((JSON.parse(String(event.data)) as { id?: number }).id !== id) return;
          socket.removeEventListener("message", onMessage);
          resolve();
        };
        socket.addEventListener("message", onMessage);
      });
      socket.send(JSON.stringify({ id, method: "HeapProfiler.collectGarbage" }));
      await reply;
    }
  } finally {
    socket.close();
  }
}
