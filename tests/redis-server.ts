/**
 * A real redis-server (Debian's: `apt-get install -y redis-server`) on
 * 127.0.0.1 and a free port, in memory only (or, `persist`, writing each
 * command to its append-only file, as a production Redis holding jobs does),
 * for the tests of what gateways share. Found as tests/programs.ts finds it (REDIS_SERVER_PATH, then the usual paths).
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, killedWithParent } from "./proc";
import { redisServerPath } from "./programs";

export const REDIS_SERVER_PATH = redisServerPath();

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Kills the server at once, as a crash would; its data is gone unless it persists. */
  stop(): Promise<void>;
  /** Starts it again on the same port: empty, or as it was if it persists. */
  restart(): Promise<void>;
}

/** True when something on the port answers PING with PONG. */
function pong(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let answer = "";
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => {
      done(false);
    });
    socket.on("error", () => {
      done(false);
    });
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk: Buffer) => {
      answer += chunk.toString();
      if (answer.includes("\r\n")) done(answer.startsWith("+PONG"));
    });
  });
}

function launch(port: number, dir: string | undefined): { child: ChildProcess; output: () => string } {
  const persistence = dir === undefined ? ["--appendonly", "no", "--dir", tmpdir()] : ["--appendonly", "yes", "--appendfsync", "always", "--dir", dir];
  const child = spawn(REDIS_SERVER_PATH, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", ...persistence, "--loglevel", "warning"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  // A killed test run takes its redis-server with it.
  if (child.pid !== undefined) {
    const watchdog = killedWithParent(child.pid);
    child.once("exit", () => {
      watchdog.kill();
    });
  }
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  return { child, output: () => output };
}

export async function startRedisServer({ persist = false } = {}): Promise<RedisServer> {
  if (!existsSync(REDIS_SERVER_PATH)) {
    throw new Error(`redis-server not found at ${REDIS_SERVER_PATH}: apt-get install -y redis-server, or set REDIS_SERVER_PATH (npm test installs it where it can)`);
  }
  const port = await freePort();
  const dir = persist ? mkdtempSync(path.join(tmpdir(), "redis-aof-")) : undefined;
  let current: { child: ChildProcess; output: () => string } | undefined;
  const killOnExit = () => {
    current?.child.kill("SIGKILL");
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", killOnExit);

  const start = async () => {
    const started = launch(port, dir);
    current = started;
    const deadline = Date.now() + 10_000;
    while (!(await pong(port))) {
      if (started.child.exitCode !== null || Date.now() > deadline) {
        started.child.kill("SIGKILL");
        throw new Error(`redis-server did not start on port ${port}:\n${started.output()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const stop = async () => {
    const child = current?.child;
    current = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  };

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    restart: async () => {
      await stop();
      await start();
    },
  };
}
