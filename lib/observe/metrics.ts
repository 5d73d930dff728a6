import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { JobStore } from "../jobs/types";
import type { Limiter } from "../limiter/types";
import type { Balancer } from "../upstream/balancer";
import { ERRORS } from "../errors";
import type { ErrorCode } from "../errors";
import { canGenerate } from "../schemas";

/** From a 5 ms rejection to a 300 s generation (REQUEST_TIMEOUT's default). */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300];

/** The refusals of a busy gateway (lib/errors.ts), each counted from zero. */
const REJECTION_REASONS = (Object.keys(ERRORS) as ErrorCode[]).filter((code) => ERRORS[code].rejection);

/** What one finished request adds to the metrics; times in milliseconds. */
export interface RequestOutcome {
  route: string;
  status: number;
  durationMs: number;
  queueWaitMs: number | undefined;
  upstreamMs: number | undefined;
  bytes: number;
  errorKind: ErrorCode | undefined;
}

export type Metrics = ReturnType<typeof createMetrics>;

/** What the gauges read when scraped: the limiter, the servers, and the job store if it is open. */
export interface MetricSources {
  readonly limiter: Pick<Limiter, "stats">;
  readonly upstream: Pick<Balancer, "orphaned" | "health">;
  readonly openJobs: { readonly store: Pick<JobStore, "counts" | "usage"> } | undefined;
}

/** The gateway's metrics; the gauges read `gateway`'s limiter and servers when scraped. */
export function createMetrics(gateway: MetricSources) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const seconds = (name: string, help: string, labelNames: "route"[] = ["route"]) =>
    new Histogram({ name, help, labelNames, buckets: LATENCY_BUCKETS, registers });
  const counter = <Label extends string = never>(name: string, help: string, labelNames: Label[] = []) =>
    new Counter<Label>({ name, help, labelNames, registers });

  const metrics = {
    registry,
    requests: counter("gateway_requests_total", "Requests answered, by the handler's route and the HTTP status (499: the client went away).", [
      "route",
      "status",
    ]),
    duration: seconds("gateway_request_duration_seconds", "Whole request, arrival to last byte (streams: to the stream's end)."),
    queueWait: seconds("gateway_queue_wait_seconds", "Time spent waiting for a generation slot, by every request that asked for one."),
    upstreamTime: seconds("gateway_upstream_duration_seconds", "Time spent on the GPU server, by every request sent to it (streams: to the stream's end)."),
    jobQueueWait: seconds("gateway_job_queue_wait_seconds", "From a job's submission to its generation's start on the GPU server.", []),
    jobEventsKept: counter(
      "gateway_job_events_kept_total",
      "Events written to jobs' logs (a place in line is kept once per job; later ones are told to followers only).",
    ),
    upstreamErrors: counter("gateway_upstream_errors_total", "Failures of the GPU server, by kind (the gateway's error code).", ["route", "kind"]),
    rejections: counter("gateway_rejections_total", "Requests turned away before reaching the GPU server.", ["reason"]),
    clientAborts: counter("gateway_client_aborts_total", "Requests whose client went away before the answer was complete.", ["route"]),
    bytesSent: counter("gateway_response_bytes_total", "Bytes of generate answers sent and of stream events relayed.", ["route"]),
  };
  for (const reason of REJECTION_REASONS) metrics.rejections.labels(reason).inc(0);

  const gauges: [name: string, help: string, read: () => number | undefined | Promise<number | undefined>][] = [
    ["gateway_in_flight", "Generations running on the GPU server now.", () => gateway.limiter.stats().in_flight],
    ["gateway_queued", "Requests waiting for a generation slot now.", () => gateway.limiter.stats().queued],
    ["gateway_images_stored", "Images kept for jobs.", async () => (await gateway.openJobs?.store.usage())?.images],
    ["gateway_images_bytes", "Bytes of the images kept for jobs (bounded by DATA_MAX_BYTES).", async () => (await gateway.openJobs?.store.usage())?.bytes],
    [
      "gateway_orphaned",
      "Generations whose client left (or timed out) that the GPU server may still run; they hold their slots until it is done.",
      () => gateway.upstream.orphaned(),
    ],
    [
      "gateway_upstream_up",
      "1 when the GPU server's latest health answer is healthy, else 0.",
      async () => {
        const result = await gateway.upstream.health();
        return result.ok && result.health.status === "healthy" && canGenerate(result.health) ? 1 : 0;
      },
    ],
  ];
  for (const [name, help, read] of gauges) {
    new Gauge({
      name,
      help,
      registers,
      async collect() {
        this.set((await read()) ?? 0);
      },
    });
  }
  new Gauge({
    name: "gateway_jobs",
    help: "Jobs kept, by status (none until the job store is open).",
    labelNames: ["status"],
    registers,
    async collect() {
      for (const [status, count] of Object.entries((await gateway.openJobs?.store.counts()) ?? {})) this.set({ status }, count);
    },
  });
  return metrics;
}

export function recordRequest(m: Metrics, outcome: RequestOutcome): void {
  const { route, errorKind } = outcome;
  m.requests.inc({ route, status: String(outcome.status) });
  m.duration.observe({ route }, outcome.durationMs / 1000);
  if (outcome.queueWaitMs !== undefined) m.queueWait.observe({ route }, outcome.queueWaitMs / 1000);
  if (outcome.upstreamMs !== undefined) m.upstreamTime.observe({ route }, outcome.upstreamMs / 1000);
  if (outcome.bytes > 0) m.bytesSent.inc({ route }, outcome.bytes);
  if (errorKind === undefined) return;
  if (ERRORS[errorKind].upstream) m.upstreamErrors.inc({ route, kind: errorKind });
  else if (ERRORS[errorKind].rejection) m.rejections.inc({ reason: errorKind });
  else if (errorKind === "client_closed") m.clientAborts.inc({ route });
}
