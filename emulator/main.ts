/**
 * CLI entry: `tsx emulator/main.ts`. Configured by EMULATOR_PORT (8001), EMULATOR_HOST
 * (127.0.0.1), EMULATOR_STEP_MS (250), EMULATOR_SLOTS (4), EMULATOR_MAX_QUEUE (32),
 * EMULATOR_IMAGE (pattern|noise), EMULATOR_IMAGE_FORMAT (jpeg|png), EMULATOR_ON_DISCONNECT
 * (continue|stop), EMULATOR_REQUEST_TIMEOUT_MS (the server's own request_timeout; unset: none),
 * EMULATOR_FAULT (a fault as JSON) and EMULATOR_STAMP_EVENTS (true: progress events carry
 * `emulator_sent_at`, for benchmarks). Empty means unset.
 */
import { parseFault, startEmulator } from "./server";
import type { Fault } from "./server";

function exit(message: string): never {
  console.error(`emulator: ${message}`);
  process.exit(1);
}

function env(name: string): string | undefined {
  const value = process.env[name]?.trim();
  return value ? value : undefined;
}

function wholeNumber(name: string, fallback: number, min: number, max?: number): number {
  const raw = env(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || (max !== undefined && value > max)) {
    const range = max === undefined ? `of at least ${min}` : `from ${min} to ${max}`;
    exit(`${name}=${JSON.stringify(raw)} must be a whole number ${range}`);
  }
  return value;
}

function choice<T extends string>(name: string, allowed: readonly [T, ...T[]]): T {
  const raw = env(name) ?? allowed[0];
  const found = allowed.find((value) => value === raw);
  if (found === undefined) exit(`${name}=${JSON.stringify(raw)} must be one of ${allowed.join(", ")}`);
  return found;
}

function fault(): Fault | null {
  const raw = env("EMULATOR_FAULT");
  if (raw === undefined) return null;
  try {
    return parseFault(JSON.parse(raw));
  } catch (error) {
    return exit(`EMULATOR_FAULT=${JSON.stringify(raw)} must be a fault as JSON: ${(error as Error).message}`);
  }
}

const options = {
  port: wholeNumber("EMULATOR_PORT", 8001, 0, 65535),
  host: env("EMULATOR_HOST") ?? "127.0.0.1",
  stepMs: wholeNumber("EMULATOR_STEP_MS", 250, 0),
  slots: wholeNumber("EMULATOR_SLOTS", 4, 1),
  maxQueue: wholeNumber("EMULATOR_MAX_QUEUE", 32, 0),
  image: choice("EMULATOR_IMAGE", ["pattern", "noise"]),
  imageFormat: choice("EMULATOR_IMAGE_FORMAT", ["jpeg", "png"]),
  onDisconnect: choice("EMULATOR_ON_DISCONNECT", ["continue", "stop"]),
  requestTimeoutMs: env("EMULATOR_REQUEST_TIMEOUT_MS") === undefined ? null : wholeNumber("EMULATOR_REQUEST_TIMEOUT_MS", 0, 1, 2 ** 31 - 1),
  fault: fault(),
  stampEvents: env("EMULATOR_STAMP_EVENTS") === "true",
};

const emulator = await startEmulator(options).catch((error: unknown) =>
  exit(`cannot listen on ${options.host}:${options.port}: ${(error as Error).message}`),
);
console.log(`emulator listening on ${emulator.url}`);

const stop = () => {
  emulator.close().then(
    () => process.exit(0),
    (error: unknown) => exit(`close failed: ${(error as Error).message}`),
  );
};
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
