/**
 * `npm run demo`: the emulator on :8001 and the built gateway on :3000 in one
 * command. Ctrl-C stops both; if either dies, the other is stopped too.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import path from "node:path";
import { nextStartArgs } from "./next-start";

const root = path.resolve(import.meta.dirname, "..");
const emulatorPort = process.env.EMULATOR_PORT ?? "8001";
const gatewayPort = process.env.PORT ?? "3000";

function run(name: string, args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const prefix = (chunk: Buffer) => chunk.toString().replace(/^(?=.)/gm, `[${name}] `);
  child.stdout.on("data", (chunk: Buffer) => process.stdout.write(prefix(chunk)));
  child.stderr.on("data", (chunk: Buffer) => process.stderr.write(prefix(chunk)));
  return child;
}

const emulator = run("emulator", ["--import", "tsx", "emulator/main.ts"], { EMULATOR_PORT: emulatorPort });
const gateway = run("gateway", nextStartArgs("-p", gatewayPort), {
  TEXT2IMAGE_SERVER_URL: process.env.TEXT2IMAGE_SERVER_URL ?? `http://127.0.0.1:${emulatorPort}`,
  NEXT_TELEMETRY_DISABLED: "1",
});
const children = [emulator, gateway];

let stopping = false;
function stop(code: number): void {
  if (stopping) return;
  stopping = true;
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
  process.exitCode = code;
}

for (const child of children) {
  child.on("exit", (code) => {
    stop(stopping ? 0 : (code ?? 1));
  });
}
process.on("SIGINT", () => {
  stop(0);
});
process.on("SIGTERM", () => {
  stop(0);
});

console.log(`Gateway: http://localhost:${gatewayPort}  (emulated GPU server: http://127.0.0.1:${emulatorPort}). Ctrl-C stops both.`);
