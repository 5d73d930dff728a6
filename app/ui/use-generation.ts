"use client";

import { useCallback, useEffect, useRef, useState } from "react";
import { seedValue } from "@/lib/schemas";
import type { CompleteEvent, GenerateRequest, Seed } from "@/lib/schemas";
import type { JobOutput } from "@/lib/api-shapes";
import type { z } from "zod";
import { GenerationError, cancelJob, openJobEvents, openStream, randomToken, submitJob } from "./api";

/** A finished image and what made it. */
export interface GenerationResult {
  /** The image: its URL in the gateway's image store, or a data URI from the stream. */
  image: string;
  /** image/jpeg (the genuine server's default) or image/png. */
  contentType: string;
  seed: Seed;
  width: number;
  height: number;
  generationTimeMs: number;
  request: GenerateRequest;
}

/** `startedAt` and `elapsedMs` are on the `performance.now()` clock. */
export type GenerationState =
  | { phase: "idle" }
  | { phase: "starting"; startedAt: number }
  | { phase: "queued"; startedAt: number; position: number }
  /** The GPU server refused it before starting (busy, no CUDA): the gateway tries again by itself. */
  | { phase: "waiting"; startedAt: number; reason: string; retryInMs: number }
  | { phase: "generating"; startedAt: number; step: number; totalSteps: number }
  | { phase: "done"; elapsedMs: number }
  | { phase: "cancelled"; elapsedMs: number }
  | { phase: "error"; elapsedMs: number; message: string; keyRejected?: boolean };

export function isRunning(state: GenerationState): state is Extract<GenerationState, { startedAt: number }> {
  return state.phase === "starting" || state.phase === "queued" || state.phase === "waiting" || state.phase === "generating";
}

/** The job this tab follows, kept across a reload: its id and when it was sent (epoch ms). */
const CURRENT_JOB = "text2image-gateway.job";
/** Reconnections in a row, with a growing pause, before the page gives up on a job's stream. */
const RECONNECTS = 5;

interface CurrentJob {
  id: string;
  sentAt: number;
  request: GenerateRequest;
}

function storedJob(): CurrentJob | undefined {
  try {
    const stored = JSON.parse(sessionStorage.getItem(CURRENT_JOB) ?? "null") as (CurrentJob & { request: { seed: string } }) | null;
    // The seed was kept as its digits: a bigint has no JSON.
    return stored ? { ...stored, request: { ...stored.request, seed: seedValue(BigInt(stored.request.seed)) } } : undefined;
  } catch {
    return undefined;
  }
}

function storeJob(job: CurrentJob | undefined): void {
  try {
    if (job) sessionStorage.setItem(CURRENT_JOB, JSON.stringify({ ...job, request: { ...job.request, seed: String(job.request.seed) } }));
    else sessionStorage.removeItem(CURRENT_JOB);
  } catch {
    // storage off: a reload then loses track of the job (the history still shows it once done)
  }
}

function streamResult(event: z.output<typeof CompleteEvent>, request: GenerateRequest, elapsedMs: number): GenerationResult {
  // The contract says a data URI; a bare base64 string from an older server still shows (as a JPEG, its default).
  const image = event.image_base64.startsWith("data:") ? event.image_base64 : `data:image/jpeg;base64,${event.image_base64}`;
  return {
    image,
    contentType: /^data:([^;,]+)/.exec(image)?.[1] ?? "image/jpeg",
    // JSON.parse rounds a seed past 2^53; the server echoes the one it was given, which the request holds exactly.
    seed: event.seed !== undefined && Number.isSafeInteger(event.seed) ? event.seed : request.seed,
    width: event.width ?? request.width,
    height: event.height ?? request.height,
    generationTimeMs: event.generation_time_ms ?? Math.round(elapsedMs),
    request,
  };
}

/** A job's output as a result; its seed comes as digits, exact past 2^53. */
export function jobResult(output: JobOutput, request: GenerateRequest, elapsedMs: number): GenerationResult {
  return {
    image: output.image_url,
    contentType: output.content_type,
    seed: output.seed !== null && /^-?\d+$/.test(output.seed) ? seedValue(BigInt(output.seed)) : request.seed,
    width: output.width ?? request.width,
    height: output.height ?? request.height,
    generationTimeMs: output.generation_time_ms ?? Math.round(elapsedMs),
    request,
  };
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * One generation at a time. With jobs (`jobs`), a generation is a job: it
 * lives on when the page goes (a reload takes it up again, from its events
 * kept by the gateway) and Cancel cancels it by id. Without, it is the SSE
 * stream, and leaving the page cancels it. `run` resolves with the result, or
 * null when it failed or was cancelled (the state says which).
 */
export function useGeneration({ jobs, apiKey }: { jobs: boolean | undefined; apiKey: string }) {
  const [state, setState] = useState<GenerationState>({ phase: "idle" });
  const [resumed, setResumed] = useState<GenerationResult | null>(null);
  const controllerRef = useRef<AbortController | null>(null);
  const jobRef = useRef<string | null>(null);
  // The key as it is now, for a stream taken up again later.
  const keyRef = useRef(apiKey);
  useEffect(() => {
    keyRef.current = apiKey;
  }, [apiKey]);

  // Leaving the page stops listening; with the stream, that also cancels the generation.
  useEffect(() => () => controllerRef.current?.abort(), []);

  /** Follows a generation's events to its end; the state shows each. */
  const follow = useCallback(async (startedAt: number, request: GenerateRequest, events: () => Promise<AsyncIterable<FollowedEvent>>, controller: AbortController) => {
    controllerRef.current?.abort();
    controllerRef.current = controller;
    const elapsed = () => performance.now() - startedAt;
    setState({ phase: "starting", startedAt });
    try {
      for await (const event of await events()) {
        if (event.type === "queued") setState({ phase: "queued", startedAt, position: event.queue_position });
        else if (event.type === "retrying") setState({ phase: "waiting", startedAt, reason: event.message, retryInMs: event.retry_in_ms });
        else if (event.type === "progress") setState({ phase: "generating", startedAt, step: event.step, totalSteps: event.total_steps });
        else if (event.type === "error") throw new GenerationError(event.message);
        else if (event.type === "canceled") {
          setState({ phase: "cancelled", elapsedMs: elapsed() });
          return null;
        } else {
          setState({ phase: "done", elapsedMs: elapsed() });
          return event.result(request, elapsed());
        }
      }
      throw new GenerationError("The gateway closed the stream before the image was ready.");
    } catch (error) {
      // A newer run replaced this one: it owns the state now.
      if (controllerRef.current !== controller) return null;
      if (controller.signal.aborted) setState({ phase: "cancelled", elapsedMs: elapsed() });
      else {
        const message =
          error instanceof GenerationError ? error.message : "The connection to the gateway was lost before the image was ready.";
        const keyRejected = error instanceof GenerationError && error.keyRejected;
        setState({ phase: "error", elapsedMs: elapsed(), message, ...(keyRejected && { keyRejected }) });
      }
      return null;
    } finally {
      if (controllerRef.current === controller) controllerRef.current = null;
    }
  }, []);

  /** The job followed: kept so a reload takes it up, and Cancel cancels it by id. */
  const remember = useCallback((job: CurrentJob) => {
    storeJob(job);
    jobRef.current = job.id;
  }, []);
  /** After `follow` ends; unless a newer one took over (which then owns the job). */
  const forget = useCallback(() => {
    if (controllerRef.current !== null) return;
    storeJob(undefined);
    jobRef.current = null;
  }, []);

  // A reload in the middle of a job: take it up again, from its first event.
  useEffect(() => {
    const job = jobs ? storedJob() : undefined;
    if (!job) return;
    remember(job);
    const controller = new AbortController();
    const startedAt = performance.now() - Math.max(0, Date.now() - job.sentAt);
    // eslint-disable-next-line react-hooks/set-state-in-effect -- the job lives in the gateway and sessionStorage: this is taking it up
    void follow(startedAt, job.request, () => Promise.resolve(jobEvents(job.id, controller.signal, () => keyRef.current)), controller)
      .finally(forget)
      .then(setResumed);
  }, [jobs, follow, remember, forget]);

  const cancel = useCallback(() => {
    const id = jobRef.current;
    // A job is cancelled by id and its stream ends with `canceled`; if the gateway cannot be told, the job goes on, and so does Cancel.
    if (id) void cancelJob(id, keyRef.current).catch(() => undefined);
    else controllerRef.current?.abort();
  }, []);

  const run = useCallback(
    (request: GenerateRequest): Promise<GenerationResult | null> => {
      const controller = new AbortController();
      const { signal } = controller;
      if (!jobs) return follow(performance.now(), request, () => Promise.resolve(streamEvents(request, signal, keyRef.current)), controller);
      const sentAt = Date.now();
      const events = async () => {
        const job = await submitJob(request, randomToken(), signal, keyRef.current);
        remember({ id: job.id, sentAt, request });
        return jobEvents(job.id, signal, () => keyRef.current);
      };
      return follow(performance.now(), request, events, controller).finally(forget);
    },
    [jobs, follow, remember, forget],
  );

  return { state, run, cancel, resumed };
}

/** The events `follow` reads, the same from a job's stream and the generate stream. */
type FollowedEvent =
  | { type: "queued"; queue_position: number }
  | { type: "retrying"; message: string; retry_in_ms: number }
  | { type: "progress"; step: number; total_steps: number }
  | { type: "error"; message: string }
  | { type: "canceled" }
  | { type: "complete"; result: (request: GenerateRequest, elapsedMs: number) => GenerationResult };

async function* streamEvents(request: GenerateRequest, signal: AbortSignal, apiKey: string): AsyncGenerator<FollowedEvent> {
  const reader = (await openStream(request, signal, apiKey)).getReader();
  try {
    for (;;) {
      const { done, value: event } = await reader.read();
      if (done) return;
      if (event.type === "complete") {
        yield { type: "complete", result: (req, elapsedMs) => streamResult(event, req, elapsedMs) };
        return;
      }
      yield event;
    }
  } finally {
    void reader.cancel(); // nothing follows the end, and an abort must close the connection
  }
}

/**
 * A job's events to its end. A stream cut short (a tunnel's idle timeout, a
 * phone asleep) is taken up again after its last event, so nothing is missed
 * or repeated; the gateway's own refusals (404: the job is gone) end it.
 */
async function* jobEvents(id: string, signal: AbortSignal, apiKey: () => string): AsyncGenerator<FollowedEvent> {
  let lastEventId: string | undefined;
  let failures = 0;
  for (;;) {
    try {
      const reader = (await openJobEvents(id, lastEventId, signal, apiKey())).getReader();
      try {
        for (;;) {
          const { done, value: event } = await reader.read();
          if (done) break;
          failures = 0;
          lastEventId = event.eventId ?? lastEventId;
          if (event.type === "complete") {
            const { output } = event;
            yield { type: "complete", result: (request, elapsedMs) => jobResult(output, request, elapsedMs) };
            return;
          }
          if (event.type === "error") {
            yield { type: "error", message: event.message };
            return;
          }
          yield event;
          if (event.type === "canceled") return;
        }
      } finally {
        void reader.cancel();
      }
    } catch (error) {
      if (error instanceof GenerationError && error.status === 404) throw new GenerationError("The gateway no longer has this generation: it expired, or is another API key's.");
      if (signal.aborted || (error instanceof GenerationError && error.status !== undefined && error.status < 500)) throw error;
      if (++failures > RECONNECTS) throw error;
    }
    await pause(Math.min(500 * 2 ** failures, 8000), signal);
    if (signal.aborted) throw new DOMException("Aborted", "AbortError");
  }
}
