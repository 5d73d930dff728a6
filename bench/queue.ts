/**
 * A long queue of jobs: `count` submitted at once to a gateway that runs one
 * generation at a time on an instant GPU (the emulator, no step time, small
 * JPEGs). What it measures: the rows the jobs' logs took (events kept), the
 * time from the first submission until the last job ended, and the longest
 * the gateway's event loop was held meanwhile (prom-client's
 * nodejs_eventloop_lag_max_seconds, reset by a scrape just before).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startEmulator, startGateway } from "./servers";
import type { Server } from "./servers";

export interface QueueResult {
  jobs: number;
  eventsKept: number;
  drainMs: number;
  worstEventLoopMs: number;
  /** The slowest submission's answer (each answers once its job has its place in line). */
  slowestSubmitMs: number;
}

const BODY = JSON.stringify({ prompt: "benchmark: a long queue", width: 256, height: 256, num_inference_steps: 6 });
const TOKEN = { "x-client-token": "bench-long-queue-client" };
/** Submissions in flight at once: a crowd, not 1,000 sockets. */
const SUBMITTERS = 50;

async function metric(gateway: Server, name: string): Promise<number> {
  const text = await (await fetch(`${gateway.url}/api/metrics/gateway`)).text();
  const value = new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1];
  if (value === undefined) throw new Error(`no ${name} in the gateway's metrics`);
  return Number(value);
}

export async function longQueue(count = 1000): Promise<QueueResult> {
  const servers: Server[] = [];
  const dataDir = mkdtempSync(path.join(tmpdir(), "bench-queue-"));
  try {
    const emulator = await startEmulator({ EMULATOR_IMAGE: "pattern", EMULATOR_IMAGE_FORMAT: "jpeg" });
    servers.push(emulator);
    const gateway = await startGateway({
      upstreamUrl: emulator.url,
      env: { DATA_DIR: dataDir, MAX_CONCURRENT_REQUESTS: "1", MAX_QUEUE: String(count), QUEUE_TIMEOUT: "600", LOG_LEVEL: "warn" },
    });
    servers.push(gateway);
    await metric(gateway, "nodejs_eventloop_lag_max_seconds"); // the scrape resets the event-loop histogram
    const keptBefore = await metric(gateway, "gateway_job_events_kept_total");
    const startedAt = performance.now();
    const ids: string[] = [];
    let slowestSubmitMs = 0;
    let next = 0;
    await Promise.all(
      Array.from({ length: SUBMITTERS }, async () => {
        while (next < count) {
          const index = next++;
          const sentAt = performance.now();
          const response = await fetch(`${gateway.url}/api/jobs`, { method: "POST", body: BODY, headers: { "content-type": "application/json", ...TOKEN } });
          slowestSubmitMs = Math.max(slowestSubmitMs, performance.now() - sentAt);
          if (response.status !== 202 && response.status !== 200) throw new Error(`submission ${index} answered ${response.status}: ${await response.text()}`);
          ids[index] = ((await response.json()) as { id: string }).id;
        }
      }),
    );
    // One generation at a time, first come first served: the last submitted ends last.
    const last = ids.at(-1) ?? "";
    for (;;) {
      const { status } = (await (await fetch(`${gateway.url}/api/jobs/${last}`)).json()) as { status: string };
      if (status === "succeeded") break;
      if (status === "failed" || status === "canceled") throw new Error(`the last job ended ${status}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const drainMs = performance.now() - startedAt;
    const worstEventLoopMs = (await metric(gateway, "nodejs_eventloop_lag_max_seconds")) * 1000;
    const eventsKept = (await metric(gateway, "gateway_job_events_kept_total")) - keptBefore;
    return { jobs: count, eventsKept, drainMs, worstEventLoopMs, slowestSubmitMs };
  } finally {
    for (const server of servers.reverse()) await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The report's line for it. */
export function queueLine(result: QueueResult): string {
  return (
    `- Long queue: ${result.jobs} jobs submitted at once, one generation at a time on an instant GPU: ` +
    `${result.eventsKept} events kept (${(result.eventsKept / result.jobs).toFixed(1)} a job), ` +
    `drained in ${(result.drainMs / 1000).toFixed(1)} s, worst event-loop delay ${result.worstEventLoopMs.toFixed(0)} ms, ` +
    `slowest submission ${result.slowestSubmitMs.toFixed(0)} ms`
  );
}

if (import.meta.url === `file://${process.argv[1] ?? ""}`) {
  console.log(queueLine(await longQueue(Number(process.argv[2] ?? 1000))));
}
