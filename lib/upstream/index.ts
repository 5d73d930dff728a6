import "server-only";
import { config } from "../config";
import { processSingleton } from "../singleton";
import { UpstreamServer } from "./server";

export type { HealthResult, OpenResponse } from "./server";

/** The GPU server this process forwards to, with its connection pool. */
export function upstream(): UpstreamServer {
  return processSingleton("upstream", () => new UpstreamServer(config().serverUrl, config()));
}
