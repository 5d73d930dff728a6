import "server-only";
import { config } from "../config";
import { processSingleton } from "../singleton";
import { LocalLimiter } from "./local";
import type { Limiter } from "./types";

export type { Limiter, LimiterStats, Slot } from "./types";

/** The process's limiter, built from the configuration on first use. */
export function limiter(): Limiter {
  return processSingleton("limiter", () => new LocalLimiter(config()));
}
