"use client";

import { useCallback, useEffect, useRef, useState } from "react";
import type { CompleteEvent, GenerateRequest, Seed } from "@/lib/schemas";
import type { z } from "zod";
import { GenerationError, openStream } from "./stream";

/** A finished image and what made it. */
export interface GenerationResult {
  /** A data URI of the image (JPEG or PNG, as the GPU server makes them). */
  image: string;
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
  | { phase: "generating"; startedAt: number; step: number; totalSteps: number }
  | { phase: "done"; elapsedMs: number }
  | { phase: "cancelled"; elapsedMs: number }
  | { phase: "error"; elapsedMs: number; message: string; keyRejected?: boolean };

export function isRunning(state: GenerationState): state is Extract<GenerationState, { startedAt: number }> {
  return state.phase === "starting" || state.phase === "queued" || state.phase === "generating";
}

function toResult(event: z.output<typeof CompleteEvent>, request: GenerateRequest, elapsedMs: number): GenerationResult {
  // The contract says a data URI; a bare base64 string from an older server still shows (as a JPEG, its default).
  const image = event.image_base64.startsWith("data:") ? event.image_base64 : `data:image/jpeg;base64,${event.image_base64}`;
  return {
    image,
    // JSON.parse rounds a seed past 2^53; the server echoes the one it was given, which the request holds exactly.
    seed: event.seed !== undefined && Number.isSafeInteger(event.seed) ? event.seed : request.seed,
    width: event.width ?? request.width,
    height: event.height ?? request.height,
    generationTimeMs: event.generation_time_ms ?? Math.round(elapsedMs),
    request,
  };
}

/**
 * One generation at a time over the SSE endpoint. `run` resolves with the
 * result, or null when it failed or was cancelled (the state says which).
 */
export function useGeneration() {
  const [state, setState] = useState<GenerationState>({ phase: "idle" });
  const controllerRef = useRef<AbortController | null>(null);

  // Leaving the page must not leave the GPU working for nobody.
  useEffect(() => () => controllerRef.current?.abort(), []);

  const cancel = useCallback(() => {
    controllerRef.current?.abort();
  }, []);

  const run = useCallback(async (request: GenerateRequest, apiKey = ""): Promise<GenerationResult | null> => {
    controllerRef.current?.abort();
    const controller = new AbortController();
    controllerRef.current = controller;
    const startedAt = performance.now();
    const elapsed = () => performance.now() - startedAt;
    setState({ phase: "starting", startedAt });
    try {
      const reader = (await openStream(request, controller.signal, apiKey)).getReader();
      for (;;) {
        const { done, value: event } = await reader.read();
        if (done) throw new GenerationError("The gateway closed the stream before the image was ready.");
        if (event.type === "queued") setState({ phase: "queued", startedAt, position: event.queue_position });
        else if (event.type === "progress") {
          setState({ phase: "generating", startedAt, step: event.step, totalSteps: event.total_steps });
        } else if (event.type === "error") throw new GenerationError(event.message);
        else {
          void reader.cancel(); // nothing follows the complete event
          setState({ phase: "done", elapsedMs: elapsed() });
          return toResult(event, request, elapsed());
        }
      }
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

  return { state, run, cancel };
}
