import "server-only";
import { pino } from "pino";
import type { Logger } from "pino";
import { config } from "../config";
import { processSingleton } from "../singleton";

/**
 * The process's logger: JSON lines on stdout, written synchronously so a line
 * is out before the process may die, at LOG_LEVEL.
 */
export function logger(): Logger {
  return processSingleton("logger", () =>
    pino(
      {
        level: config().logLevel,
        base: { pid: process.pid },
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
      },
      pino.destination({ dest: 1, sync: true }),
    ),
  );
}
