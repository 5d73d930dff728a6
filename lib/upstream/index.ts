import "server-only";
import { config } from "../config";
import { limiter } from "../limiter";
import { logger } from "../observe/log";
import { shutdown } from "../shutdown";
import { processSingleton } from "../singleton";
import { Balancer } from "./balancer";

export type { HealthResult, OpenResponse } from "./server";
export { reportedHealth } from "./server";
export type { Balancer } from "./balancer";

/**
 * The GPU servers this process forwards to (TEXT2IMAGE_SERVER_URL, one or
 * several), each with its connection pool, behind one balancer.
 */
export function upstream(): Balancer {
  return processSingleton("upstream", () => {
    const settings = config();
    const balancer = new Balancer(settings.serverUrls, {
      ...settings,
      onChange: ({ event, url, periodMs, failures }) => {
        if (event === "ejected") {
          logger().warn({ server: url, ejected_for_ms: periodMs, consecutive_failures: failures }, "text-to-image server ejected");
        } else {
          logger().info({ server: url }, "text-to-image server back in rotation");
        }
      },
      onCapacity: (capacity) => {
        limiter().setCapacity?.(capacity);
      },
      onOrphanEnd: ({ url, heldMs, reason }) => {
        const fields = { server: url, held_ms: Math.round(heldMs), reason };
        if (reason === "timeout") logger().warn(fields, "orphaned generation not seen done within REQUEST_TIMEOUT: its slot is freed");
        else logger().debug(fields, "orphaned generation done: its slot is freed");
      },
    });
    shutdown().closeOnExit("users", () => balancer.close());
    return balancer;
  });
}
