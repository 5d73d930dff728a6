/**
 * Processes and ports as Linux's /proc shows them, for the tests and the
 * benchmark: a free port, the process listening on one, its resident memory.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync, readlinkSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { pathToFileURL } from "node:url";

/** The preload that makes a server exit with its starter (tests/die-with-parent.mjs). */
export const DIE_WITH_PARENT_URL = pathToFileURL(path.join(import.meta.dirname, "die-with-parent.mjs")).href;

/** Node flags for a server this process starts: it exits when this process is gone. */
export const DIES_WITH_PARENT = ["--import", `${DIE_WITH_PARENT_URL}?parent=${process.pid}`];

/**
 * For a program that cannot take the preload (redis-server): a watchdog that
 * exits with this process and kills `pid` as it goes. Kill the returned
 * watchdog once `pid` has ended, so it never outlives it.
 */
export function killedWithParent(pid: number): { kill(): void } {
  // As die-with-parent.mjs, and then it takes `pid` along.
  const script = `const check = () => { if (process.ppid !== ${process.pid}) { try { process.kill(${pid}, "SIGKILL"); } catch {} process.exit(0); } }; check(); setInterval(check, 500);`;
  const watchdog = spawn(process.execPath, ["-e", script], { stdio: "ignore" });
  watchdog.unref();
  return {
    kill: () => {
      watchdog.kill("SIGKILL");
    },
  };
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (typeof address !== "object" || address === null) throw new Error("no port");
  return address.port;
}

/**
 * The process that listens on `port`: `rootPid` itself or, should the program
 * fork a server child, that child. Found through the listening socket's inode
 * in /proc/net/tcp and the processes' fd links.
 */
export function pidListeningOn(rootPid: number, port: number): number {
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      const state = fields[3];
      const inode = fields[9];
      if (local === undefined || inode === undefined) continue;
      if (state === "0A" && parseInt(local.split(":")[1] ?? "", 16) === port) inodes.add(inode);
    }
  }
  if (inodes.size === 0) throw new Error(`nothing listens on port ${port}`);
  for (const pid of [rootPid, ...descendants(rootPid)]) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
      if (inode !== undefined && inodes.has(inode)) return pid;
    }
  }
  throw new Error(`no process under ${rootPid} holds the socket listening on port ${port}`);
}

function descendants(pid: number): number[] {
  const children: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return children;
  }
  for (const task of tasks) {
    let listed = "";
    try {
      listed = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8");
    } catch {
      continue;
    }
    for (const child of listed.split(/\s+/).filter(Boolean).map(Number)) children.push(child, ...descendants(child));
  }
  return children;
}

/** Resident memory of a process in bytes (VmRSS of /proc/<pid>/status), or undefined once it is gone. */
export function residentBytes(pid: number): number | undefined {
  try {
    const kb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb === undefined ? undefined : Number(kb) * 1024;
  } catch {
    return undefined;
  }
}
