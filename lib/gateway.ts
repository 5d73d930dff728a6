import "server-only";
import { after } from "next/server";
import { config } from "./config";
import { GatewayError, fail } from "./errors";
import { readJsonObject, streamedJson } from "./http";
import { limiter } from "./limiter";
import type { RequestRecord } from "./observe/request";
import type { GenerateRequest } from "./schemas";
import { validateGenerateRequest } from "./schemas";
import { shutdown } from "./shutdown";
import type { Work } from "./shutdown";
import { EventSplitter, EventStream, inspectEvent } from "./sse";
import { upstream } from "./upstream";
import type { OpenResponse } from "./upstream";

/** Reads and validates a generate body; nothing invalid goes further. A drain that starts meanwhile stops the read (`signal`). */
export async function readGenerateRequest(request: Request, signal?: AbortSignal): Promise<GenerateRequest> {
  const body = await readJsonObject(request, { maxBytes: config().maxBodyBytes, timeoutMs: config().bodyTimeoutMs, signal });
  const result = validateGenerateRequest(body, { sizeMultiple: config().sizeMultiple });
  if (!result.ok) throw fail.validation(result.detail);
  return result.data;
}

/**
 * POST /api/generate: validate, wait for a slot, forward, and stream the
 * upstream's answer back unchanged. The slot is freed as soon as the GPU
 * server has answered, not when the client has read the image.
 */
export async function generate(request: Request, record: RequestRecord): Promise<Response> {
  const work = admitWork(request.signal);
  const params = await readGenerateRequest(request, work.queueSignal);
  record.generating(params);
  let answer: Buffer[];
  try {
    const slot = await record.measure("queue", () => limiter().acquire(work.queueSignal));
    // The slot is the upstream call's now: freed once the GPU server is done with it (lib/upstream/balancer.ts).
    answer = await record.measure("upstream", () => upstream().generate(params, work.signal, record.upstreamContext(), slot));
  } catch (error) {
    throw work.explain(error);
  }
  record.sent(answer.reduce((bytes, chunk) => bytes + chunk.length, 0));
  const response = streamedJson(answer);
  // Answered while draining: the client's next request should open a connection elsewhere.
  if (shutdown().draining) response.headers.set("connection", "close");
  return response;
}

/**
 * Enters the process's shutdown registry (lib/shutdown.ts): the 503 while
 * draining, else counted in flight until Next has closed the response, so a
 * drain never exits with an answer half sent.
 */
function admitWork(client: AbortSignal): Work {
  const work = shutdown().beginWork(client);
  after(() => {
    work.release();
  });
  return work;
}

/**
 * POST /api/generate-stream: validated and admitted as /api/generate. The
 * event stream starts only when there is something to send: `queued` events
 * for a request that must wait, or the upstream's 200. Until then a failure
 * is the usual JSON error with its status; after, a final `error` event.
 * The request's record stays open until the stream ends.
 */
export async function generateStream(request: Request, record: RequestRecord): Promise<Response> {
  const cancel = new AbortController();
  const work = admitWork(cancel.signal);
  const params = await readGenerateRequest(request, work.queueSignal);
  record.generating(params);
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
  const opened = admitAndOpen(params, work, record, (position) => {
    events.send({ type: "queued", queue_position: position, position });
    markQueued();
  });

  let first: Admitted | "queued";
  try {
    first = await Promise.race([opened, queued]);
  } catch (error) {
    cleanup();
    events.end();
    throw work.explain(error);
  }
  const streaming = record.hold();
  const relayed =
    first === "queued"
      ? opened.then(
          (admitted) => relay(admitted, events, record, work),
          (error: unknown) => {
            failStream(work.explain(error), events, record);
          },
        )
      : relay(first, events, record, work);
  void relayed.finally(() => {
    cleanup();
    streaming();
  });
  return events.response();
}

interface Admitted {
  /** Holds the slot until it is closed (see OpenResponse.close). */
  response: OpenResponse;
  /** Stops the upstream time when the stream is done with. */
  upstreamDone: () => void;
}

async function admitAndOpen(
  params: GenerateRequest,
  work: Work,
  record: RequestRecord,
  onQueued: (position: number) => void,
): Promise<Admitted> {
  const slot = await record.measure("queue", () => limiter().acquire(work.queueSignal, onQueued));
  const upstreamDone = record.begin("upstream");
  try {
    return { response: await upstream().generateStream(params, work.signal, record.upstreamContext(), slot), upstreamDone };
  } catch (error) {
    upstreamDone();
    throw error;
  }
}

/**
 * Passes the upstream's events to the client as each one completes, unchanged,
 * and ends after the `complete` or `error` event. The slot is held while the
 * GPU streams, and after, if the stream was cut short, until the GPU server
 * is done with the generation; the record hears the bytes relayed and how
 * the stream ended.
 */
async function relay({ response, upstreamDone }: Admitted, events: EventStream, record: RequestRecord, work: Work): Promise<void> {
  const splitter = new EventSplitter();
  let finished = false;
  try {
    for await (const chunk of response.chunks) {
      for (const block of splitter.push(chunk)) {
        const event = inspectEvent(block);
        if (event.kind === "malformed") {
          failStream(fail.upstreamBadResponse(event.reason), events, record);
          return;
        }
        events.write(block);
        record.sent(block.length);
        if (event.kind === "event" && (event.type === "complete" || event.type === "error")) {
          finished = true;
          // The GPU server's own error event: its failure, told in the stream instead of a status.
          if (event.type === "error") record.failedWith("upstream_status");
          events.end();
          return;
        }
      }
    }
    // The genuine server ends its stream this way when the generation fails (a timeout, a pipeline error).
    finished = true;
    failStream(fail.upstreamBadResponse("the stream ended before the image was complete"), events, record);
  } catch (error) {
    failStream(work.explain(error), events, record);
  } finally {
    upstreamDone();
    response.close(finished);
  }
}

function failStream(error: unknown, events: EventStream, record: RequestRecord): void {
  record.failed(error);
  events.fail(publicMessage(error));
}

function publicMessage(error: unknown): string {
  return (error instanceof GatewayError ? error : fail.internal(error)).message;
}
