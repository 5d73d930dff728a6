"use client";

import useSWR from "swr";
import { z } from "zod";
import { UpstreamHealth } from "@/lib/schemas";

/** GET /api/health, as far as the page reads it; unreachable servers carry `error`. */
const HealthReport = z.object({
  status: z.string(),
  in_flight: z.number().optional(),
  queued: z.number().optional(),
  max_concurrent: z.number().optional(),
  text2image_server: UpstreamHealth.extend({ error: z.string().optional() }),
});
export type HealthReport = z.output<typeof HealthReport>;

export type HealthLevel = "checking" | "healthy" | "degraded" | "unreachable";

async function fetchHealth(url: string): Promise<HealthReport> {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`The gateway's health check failed (status ${response.status})`);
  return HealthReport.parse(await response.json());
}

/** What the badge and the Generate button need to know. */
export interface Health {
  level: HealthLevel;
  report: HealthReport | undefined;
  /** Why generating is not possible now, or null when it is. */
  blocker: string | null;
}

function describe(report: HealthReport | undefined, failed: boolean): Omit<Health, "report"> {
  if (failed) return { level: "unreachable", blocker: "Gateway unreachable" };
  if (!report) return { level: "checking", blocker: "Checking GPU server…" };
  const server = report.text2image_server.status;
  if (server === "healthy") return { level: "healthy", blocker: null };
  if (server === "unreachable") return { level: "unreachable", blocker: "GPU server unreachable" };
  // "loading", "error_503", …: the server answers but cannot generate.
  return { level: "degraded", blocker: `GPU server ${server.replace(/_/g, " ")}` };
}

/** Polls /api/health every 5 s; every caller shares one request (swr dedupes by key). */
export function useHealth(): Health {
  const { data, error } = useSWR<HealthReport, unknown>("/api/health", fetchHealth, {
    refreshInterval: 5000,
    revalidateOnFocus: true,
    // Keep polling through failures at the same pace, not swr's backoff.
    errorRetryInterval: 5000,
  });
  return { report: data, ...describe(data, error !== undefined) };
}
