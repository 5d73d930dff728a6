"use client";

import { useHealth } from "./use-health";
import type { HealthReport } from "./use-health";

const LABELS = { checking: "Checking…", healthy: "Healthy", degraded: "Degraded", unreachable: "Unreachable" } as const;

/**
 * What a user of this gateway waits behind: its own queue plus the GPU
 * server's, and the tighter of its own free slots and the server's.
 */
function load(report: HealthReport): string[] {
  const server = report.text2image_server;
  const details: string[] = [];
  if (report.queued !== undefined || server.current_queue_size !== null) {
    details.push(`queue ${(report.queued ?? 0) + (server.current_queue_size ?? 0)}`);
  }
  const gatewayFree = report.max_concurrent !== undefined ? report.max_concurrent - (report.in_flight ?? 0) : Infinity;
  const free = Math.min(gatewayFree, server.available_slots ?? Infinity);
  if (Number.isFinite(free)) details.push(`${Math.max(0, free)} free slot${free === 1 ? "" : "s"}`);
  return details;
}

/** The GPU server's state at a glance: colour plus words, never colour alone. */
export function HealthBadge() {
  const { level, report } = useHealth();
  const details = report && level !== "unreachable" ? load(report) : [];
  return (
    <p className="health" data-level={level} data-testid="health-badge">
      <span className="health-dot" aria-hidden="true" />
      <span>
        <span className="health-detail-lead">
          GPU server: <strong aria-live="polite">{LABELS[level]}</strong>
        </span>
        {details.map((detail) => (
          <span className="health-detail" key={detail}>
            {" "}
            · {detail}
          </span>
        ))}
      </span>
    </p>
  );
}
