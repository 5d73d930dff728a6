/**
 * Starts the built gateway (`next start`, as production runs it) on a free
 * port, with its own environment. `npm test` builds it first.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "../..");
const nextBin = path.join(root, "node_modules/next/dist/bin/next");

export interface Gateway {
  readonly url: string;
  readonly process: ChildProcess;
  /** Everything the server printed so far. */
  output(): string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (typeof address !== "object" || address === null) throw new Error("no port");
  return address.port;
}

export async function startGateway(env: Record<string, string>): Promise<Gateway> {
  if (!existsSync(path.join(root, ".next/BUILD_ID"))) throw new Error("Build the gateway first: npm run build");
  const port = await freePort();
  const child = spawn(process.execPath, [nextBin, "start", "-p", String(port), "-H", "127.0.0.1"], {
    cwd: root,
    env: { ...process.env, NEXT_TELEMETRY_DISABLED: "1", NODE_ENV: "production", ...env },
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

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode}:\n${output}`);
    try {
      const response = await fetch(`${url}/api`);
      await response.arrayBuffer();
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`gateway did not start:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  return {
    url,
    process: child,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
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
}

/** Reads a server-sent event stream to its end, noting when each event arrived. */
export async function readEvents(response: Response, sentAt: number): Promise<ReceivedEvent[]> {
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
      if (block.startsWith(":")) events.push({ at, data: undefined, comment: block.slice(1).trim() });
      else events.push({ at, data: JSON.parse(block.replace(/^data: ?/, "")) as Record<string, unknown>, comment: undefined });
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
