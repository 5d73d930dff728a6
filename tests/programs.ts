/**
 * The real programs the tests drive: Chromium (Playwright never downloads a
 * browser here), redis-server, and curl (the README's examples). Each is found by its env override, then
 * the usual paths. `npm test` runs this file first (`tsx tests/programs.ts`):
 * what is missing it installs with apt-get when it can (root, Debian), saying
 * so in one line, as `playwright install --with-deps` does; else it stops at
 * once with the command to run.
 */
import { execFileSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

interface Program {
  name: string;
  /** The env variable that names its path. */
  override: string;
  paths: string[];
  /** Debian's package for it. */
  packageName: string;
  neededBy: string;
}

const PROGRAMS: Program[] = [
  {
    name: "Chromium",
    override: "CHROMIUM_PATH",
    paths: ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", "/usr/bin/google-chrome-stable"],
    packageName: "chromium",
    neededBy: "the browser tests",
  },
  {
    name: "redis-server",
    override: "REDIS_SERVER_PATH",
    paths: ["/usr/bin/redis-server", "/usr/local/bin/redis-server", "/opt/homebrew/bin/redis-server"],
    packageName: "redis-server",
    neededBy: "the shared-limiter tests",
  },
  {
    name: "curl",
    override: "CURL_PATH",
    paths: ["/usr/bin/curl", "/usr/local/bin/curl", "/opt/homebrew/bin/curl"],
    packageName: "curl",
    neededBy: "the README's examples",
  },
];

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Where the program is: its env override if set (then only there), else the first usual path that exists. */
function find(program: Program): string | undefined {
  const given = process.env[program.override]?.trim();
  if (given) return executable(given) ? given : undefined;
  return program.paths.find(executable);
}

function located(program: Program): string {
  return find(program) ?? program.paths[0] ?? program.name;
}

/** Chromium's path for Playwright's `executablePath`. */
export function chromiumPath(): string {
  return located(PROGRAMS[0] as Program);
}

export function redisServerPath(): string {
  return located(PROGRAMS[1] as Program);
}

export function curlPath(): string {
  return located(PROGRAMS[2] as Program);
}

/** Installs what is missing where it can, or exits with one line naming the command to run. */
function ensure(): void {
  const missing = PROGRAMS.filter((program) => find(program) === undefined);
  if (missing.length === 0) return;
  const overridden = missing.filter((program) => process.env[program.override]?.trim());
  const packages = missing.map((program) => program.packageName).join(" ");
  const canInstall = overridden.length === 0 && process.getuid?.() === 0 && executable("/usr/bin/apt-get");
  if (!canInstall) {
    const what = missing.map((program) => `${program.name} (for ${program.neededBy})`).join(" and ");
    const where = overridden.length > 0 ? `nothing executable at ${overridden.map((program) => `${program.override}=${process.env[program.override] ?? ""}`).join(", ")}; ` : "";
    console.error(`npm test needs ${what}: ${where}run \`sudo apt-get install -y ${packages}\`, or set ${missing.map((program) => program.override).join(" / ")} to where it is.`);
    process.exit(1);
  }
  console.log(`Installing ${packages} with apt-get, for ${missing.map((program) => program.neededBy).join(" and ")}.`);
  // apt-get's own output is kept, and shown only if it fails.
  const quiet = { stdio: "pipe" as const, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } };
  try {
    execFileSync("apt-get", ["update", "-qq"], quiet);
    execFileSync("apt-get", ["install", "-y", "-qq", ...missing.map((program) => program.packageName)], quiet);
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: Buffer; stderr?: Buffer };
    console.error(`apt-get could not install ${packages}:\n${String(stdout ?? "")}${String(stderr ?? "")}`);
    process.exit(1);
  }
  const still = missing.filter((program) => find(program) === undefined);
  if (still.length > 0) {
    console.error(`apt-get installed ${packages}, yet ${still.map((program) => program.name).join(" and ")} is still not found.`);
    process.exit(1);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) ensure();
