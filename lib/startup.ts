import { ConfigError, config } from "./config";

/**
 * Parses the configuration at start-up, so a bad value stops the server
 * instead of failing the first request. Next only logs a throwing register()
 * and keeps serving, hence the explicit exit.
 */
export function checkConfigOrExit(): void {
  try {
    config();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    process.exit(1);
  }
}
