/** A server a test starts dies with its starter, however that one ends: no gateway outlives a killed test run. */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { DIE_WITH_PARENT_URL } from "../proc";

const started: number[] = [];

/** Running: an exited process whose new parent has not reaped it yet (a zombie, state Z) is not. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** A starter (a test runner's stand-in) that starts a listening server, with the preload or not, prints its pid, and waits. */
async function starterWithServer(preload: boolean): Promise<{ starter: number; server: number }> {
  const server = `require("node:http").createServer().listen(0, "127.0.0.1")`;
  // As tests/proc.ts's DIES_WITH_PARENT, made in the starter: it names itself.
  const flags = preload ? `["--import", ${JSON.stringify(DIE_WITH_PARENT_URL)} + "?parent=" + process.pid]` : "[]";
  const starter = `const c = require("node:child_process").spawn(process.execPath, [...${flags}, "-e", ${JSON.stringify(server)}], { stdio: "ignore" }); console.log(c.pid); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["-e", starter], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise<string>((resolve) => {
    child.stdout.once("data", (chunk: Buffer) => {
      resolve(chunk.toString());
    });
  });
  const pids = { starter: child.pid ?? 0, server: Number(line.trim()) };
  started.push(pids.starter, pids.server);
  return pids;
}

async function gone(pid: number, withinMs: number): Promise<boolean> {
  for (const deadline = Date.now() + withinMs; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 50))) {
    if (!alive(pid)) return true;
  }
  return !alive(pid);
}

afterEach(() => {
  for (const pid of started.splice(0)) if (alive(pid)) process.kill(pid, "SIGKILL");
});

describe("a server started with DIES_WITH_PARENT", () => {
  it("exits within a second or two of its starter's kill -9", async () => {
    const { starter, server } = await starterWithServer(true);
    expect(alive(server)).toBe(true);
    process.kill(starter, "SIGKILL");
    expect(await gone(server, 3000)).toBe(true);
  });

  it("is what makes the difference: one started without it outlives its starter", async () => {
    const { starter, server } = await starterWithServer(false);
    process.kill(starter, "SIGKILL");
    expect(await gone(server, 1500)).toBe(false);
  });
});

describe("a program started beside a killedWithParent watchdog (redis-server takes no preload)", () => {
  it("is killed once its starter is killed -9", async () => {
    const proc = pathToFileURL(path.join(import.meta.dirname, "../proc.ts")).href;
    const starter = `import { spawn } from "node:child_process"; import { killedWithParent } from ${JSON.stringify(proc)}; const c = spawn("sleep", ["60"], { stdio: "ignore" }); killedWithParent(c.pid); console.log(c.pid); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", starter], { stdio: ["ignore", "pipe", "inherit"] });
    const line = await new Promise<string>((resolve) => {
      child.stdout.once("data", (chunk: Buffer) => {
        resolve(chunk.toString());
      });
    });
    const program = Number(line.trim());
    started.push(child.pid ?? 0, program);
    expect(alive(program)).toBe(true);
    process.kill(child.pid ?? 0, "SIGKILL");
    expect(await gone(program, 3000)).toBe(true);
  });
});
