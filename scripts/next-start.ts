import { readFileSync } from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");

/**
 * What `npm start` runs (package.json's start script), as arguments for
 * node, with `extra` after it: the demo, the tests and the benchmark start the
 * gateway exactly as production does, Node's flags included. Run from the
 * repository's root.
 */
export function nextStartArgs(...extra: string[]): string[] {
  const { scripts } = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as { scripts: { start: string } };
  const [command, ...args] = scripts.start.trim().split(/\s+/);
  if (command !== "node") throw new Error(`package.json's start script must run node directly, not ${command}`);
  return [...args, ...extra];
}
