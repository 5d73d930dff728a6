"use client";

import { useEffect, useState } from "react";
import type { GenerationState } from "./use-generation";

export function formatSeconds(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)} s`;
}

/** A running clock; it lives outside the live region so it is not read out ten times a second. */
function Elapsed({ since }: { since: number }) {
  const [now, setNow] = useState(since);
  useEffect(() => {
    const timer = setInterval(() => {
      setNow(performance.now());
    }, 100);
    return () => {
      clearInterval(timer);
    };
  }, []);
  return <p className="elapsed">Elapsed {formatSeconds(now - since)}</p>;
}

function Message({ state }: { state: GenerationState }) {
  switch (state.phase) {
    case "idle":
      return <p>Describe an image and press Generate.</p>;
    case "starting":
      return <p>Sending the request…</p>;
    case "queued":
      return <p>Queued — position {state.position}</p>;
    case "waiting":
      return (
        <p>
          The GPU server is not taking it yet ({state.reason}); trying again in {formatSeconds(state.retryInMs)}.
        </p>
      );
    case "generating":
      return (
        <>
          <progress value={state.step} max={state.totalSteps} aria-label="Generation progress" />
          <p>
            Step {state.step} of {state.totalSteps}
          </p>
        </>
      );
    case "done":
      return <p>Done in {formatSeconds(state.elapsedMs)}.</p>;
    case "cancelled":
      return <p>Cancelled after {formatSeconds(state.elapsedMs)}.</p>;
    case "error":
      return (
        <p className="error-message">
          <strong>Generation failed:</strong> {state.message}
        </p>
      );
  }
}

/** Where the generation stands; screen readers hear each change once. */
export function StatusPanel({ state }: { state: GenerationState }) {
  return (
    <div className="status" data-phase={state.phase}>
      <div role="status" aria-live="polite" className="status-message" data-testid="status">
        <Message state={state} />
      </div>
      {"startedAt" in state && <Elapsed key={state.startedAt} since={state.startedAt} />}
    </div>
  );
}
