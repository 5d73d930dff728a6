import { ConfigError, config } from "./lib/config";

/**
 * Runs once at server start, so a bad configuration stops start-up instead of
 * failing the first request. Next only logs a throwing register() and keeps
 * serving, hence the explicit exit.
 */
export function register(): void {
  try {
    config();
  } catch (error) {
    if (!(error instanceof ConfigError) || process.env.NEXT_RUNTIME !== "nodejs") throw error;
    console.error(error.message);
    process.exit(1);
  }
}
