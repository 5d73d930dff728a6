import "server-only";
import { config } from "./config";
import { GatewayError, fail } from "./errors";
import { readJsonObject, streamedJson } from "./http";
import { limiter } from "./limiter";
import type { Slot } from "./limiter";
import type { GenerateRequest } from "./schemas";
import { validateGenerateRequest } from "./schemas";
import { EventSplitter, EventStream, inspectEvent } from "./sse";
import { upstream } from "./upstream";
import type { OpenResponse } from "./upstream";

/** Reads and validates a generate body; nothing invalid goes further. */
export async function readGenerateRequest(request: Request): Promise<GenerateRequest> {
  const body = await readJsonObject(request, config().maxBodyBytes);
  const result = validateGenerateRequest(body);
  if (!result.ok) throw fail.validation(result.detail);
  return result.data;
}

/**
 * POST /api/generate: validate, wait for a slot, forward, and stream the
 * upstream's answer back unchanged. The slot is freed as soon as the GPU
 * server has answered, not when the client has read the image.
 */
export async function generate(request: Request): Promise<Response> {
  const params = await readGenerateRequest(request);
  const queuedAt = performance.now();
  const slot = await limiter().acquire(request.signal);
  const queueWaitMs = Math.round(performance.now() - queuedAt);
  let answer: Buffer;
  try {
    answer = await upstream().generate(params, request.signal, { queueWaitMs });
  } finally {
    slot.release();
  }
  return streamedJson(answer);
}

/**
 * POST /api/generate-stream: validated and admitted as /api/generate. The
 * event stream starts only when there is something to send: `queued` events
 * for a request that must wait, or the upstream's 200. Until then a failure
 * is the usual JSON error with its status; after, a final `error` event.
 */
export async function generateStream(request: Request): Promise<Response> {
  const params = await readGenerateRequest(request);
  const cancel = new AbortController();
  const onClientGone = () => {
    cancel.abort(fail.clientClosed(request.signal.reason));
  };
  request.signal.addEventListener("abort", onClientGone, { once: true });
  const events = new EventStream(config().sseKeepAliveMs, onClientGone);
  const cleanup = () => {
    request.signal.removeEventListener("abort", onClientGone);
  };

  let markQueued!: () => void;
  const queued = new Promise<"queued">((resolve) => {
    markQueued = () => {
      resolve("queued");
    };
  });
  const opened = admitAndOpen(params, cancel.signal, (position) => {
    events.send({ type: "queued", position });
    markQueued();
  });

  let first: Admitted | "queued";
  try {
    first = await Promise.race([opened, queued]);
  } catch (error) {
    cleanup();
    events.end();
    throw error;
  }
  const relayed =
    first === "queued"
      ? opened.then(
          (admitted) => relay(admitted, events),
          (error: unknown) => {
            events.fail(publicMessage(error));
          },
        )
      : relay(first, events);
  void relayed.finally(cleanup);
  return events.response();
}

interface Admitted {
  slot: Slot;
  response: OpenResponse;
}

async function admitAndOpen(params: GenerateRequest, signal: AbortSignal, onQueued: (position: number) => void): Promise<Admitted> {
  const queuedAt = performance.now();
  const slot = await limiter().acquire(signal, onQueued);
  const queueWaitMs = Math.round(performance.now() - queuedAt);
  try {
    return { slot, response: await upstream().generateStream(params, signal, { queueWaitMs }) };
  } catch (error) {
    slot.release();
    throw error;
  }
}

/**
 * Passes the upstream's events to the client as each one completes, checked
 * but unchanged, and ends after the `complete` or `error` event. The slot is
 * held while the GPU streams and freed however the stream ends.
 */
async function relay({ slot, response }: Admitted, events: EventStream): Promise<void> {
  const splitter = new EventSplitter();
  try {
    for await (const chunk of response.chunks) {
      for (const block of splitter.push(chunk)) {
        const event = inspectEvent(block);
        if (event.kind === "malformed") {
          events.fail(fail.upstreamBadResponse(event.reason).message);
          return;
        }
        events.write(block);
        if (event.kind === "event" && (event.type === "complete" || event.type === "error")) {
          events.end();
          return;
        }
      }
    }
    events.fail(fail.upstreamBadResponse("the stream ended before the image was complete").message);
  } catch (error) {
    events.fail(publicMessage(error));
  } finally {
    response.close();
    slot.release();
  }
}

function publicMessage(error: unknown): string {
  return (error instanceof GatewayError ? error : fail.internal(error)).message;
}
