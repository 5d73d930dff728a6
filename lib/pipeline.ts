/**
 * The one way a generation runs, whichever door it came in by: admit, validate,
 * wait for a slot, call a GPU server, check, release. No HTTP here: the doors
 * (lib/doors.ts) make a JSON answer or an event stream of it.
 */
import { fail } from "./errors";
import type { ErrorCode } from "./errors";
import type { Config } from "./config";
import type { Limiter, Slot } from "./limiter/types";
import { validateGenerateRequest } from "./schemas";
import type { GenerateRequest } from "./schemas";
import type { Drain, Work } from "./shutdown";
import { EventSplitter, inspectEvent } from "./sse";
import type { UpstreamEvent } from "./sse";
import type { Balancer } from "./upstream/balancer";
import type { CallContext, OpenResponse } from "./upstream/server";

/** What a generation runs on, handed down by the composition root (lib/registry.ts). */
export interface GenerationParts {
  readonly config: Pick<Config, "sizeMultiple">;
  readonly drain: Drain;
  readonly limiter: Limiter;
  readonly upstream: Balancer;
}

/** Who hears how a generation goes: a request's record does (lib/observe/request.ts). */
export interface GenerationObserver {
  generating(params: GenerateRequest): void;
  /** Starts timing the wait for a slot or the upstream call; the returned function stops it. */
  begin(phase: "queue" | "upstream"): () => void;
  /**
   * Awaited with the slot granted, just before the request is sent: a job
   * marks itself running there, so a gateway lost after the send is never
   * taken for one that had not sent it. A throw frees the slot, nothing sent.
   */
  sending?(): Promise<void>;
  /** What the upstream call sends on (the request id, the trace context). */
  upstreamContext(): CallContext;
  /** The GPU server told of its own failure in the stream, with a 200 already sent. */
  failedWith(kind: ErrorCode): void;
}

/**
 * One generation, counted in flight from its making (a 503 while draining) to
 * `close()`, its one release, once its answer is delivered: a drain never exits
 * with an answer half sent. Its slot is the upstream call's once granted, freed
 * when the GPU server is done. What it throws is already the error table's.
 */
export class Generation {
  private readonly work: Work;
  private params: GenerateRequest | undefined;

  /** `client` aborts when whoever asked for the image is gone. */
  constructor(
    private readonly gateway: GenerationParts,
    client: AbortSignal,
    private readonly observer: GenerationObserver,
  ) {
    this.work = gateway.drain.beginWork(client);
  }

  /** Reads the request (a drain that starts meanwhile stops the read) and validates it: nothing invalid goes further. */
  async accept(read: (signal: AbortSignal) => Promise<unknown>): Promise<void> {
    const result = validateGenerateRequest(await read(this.work.queueSignal), { sizeMultiple: this.gateway.config.sizeMultiple });
    if (!result.ok) throw fail.validation(result.detail);
    this.observer.generating(result.data);
    this.params = result.data;
  }

  /** The GPU server's whole /generate answer (a JSON object, checked), in the chunks it came in; `onQueued` as for `events`. */
  async image(onQueued?: (position: number) => void): Promise<Buffer[]> {
    const { result, done } = await this.call((...call) => this.gateway.upstream.generate(...call), onQueued);
    done();
    return result;
  }

  /**
   * /generate-stream once it answered 200: its events, whole and unchanged, up to
   * `complete` or `error`; a malformed one, or an end before the image, throws.
   * `onQueued` hears the place in line while it waits for a slot.
   */
  async events(onQueued?: (position: number) => void): Promise<AsyncGenerator<UpstreamEvent>> {
    const { result, done } = await this.call((...call) => this.gateway.upstream.generateStream(...call), onQueued);
    return this.checked(result, done);
  }

  close(): void {
    this.work.release();
  }

  /** Waits for a slot (bounded by QUEUE_TIMEOUT), then sends; `done` stops the upstream time. */
  private async call<T>(
    send: (params: GenerateRequest, signal: AbortSignal, context: CallContext, slot: Slot) => Promise<T>,
    onQueued?: (position: number) => void,
  ): Promise<{ result: T; done: () => void }> {
    const params = this.params;
    if (params === undefined) throw new Error("a generation is accepted before it is sent");
    const queued = this.observer.begin("queue");
    let slot: Slot;
    try {
      slot = await this.gateway.limiter.acquire(this.work.queueSignal, onQueued);
    } finally {
      queued();
    }
    try {
      await this.observer.sending?.();
    } catch (error) {
      slot.release();
      throw error;
    }
    const done = this.observer.begin("upstream");
    try {
      return { result: await send(params, this.work.signal, this.observer.upstreamContext(), slot), done };
    } catch (error) {
      done();
      throw error;
    }
  }

  /** The slot is held while the GPU streams, and after a stream cut short until the server is done with it. */
  private async *checked(response: OpenResponse, done: () => void): AsyncGenerator<UpstreamEvent> {
    const splitter = new EventSplitter();
    let finished = false;
    try {
      for await (const chunk of response.chunks) {
        for (const bytes of splitter.push(chunk)) {
          const event = inspectEvent(bytes);
          finished = event.type === "complete" || event.type === "error";
          // The GPU server's own error event: its failure, told in the stream instead of a status.
          if (event.type === "error") this.observer.failedWith("upstream_status");
          yield event;
          if (finished) return;
        }
      }
      // The genuine server ends its stream this way when the generation fails (a timeout, a pipeline error).
      finished = true;
      throw fail.upstreamBadResponse("the stream ended before the image was complete");
    } finally {
      done();
      response.close(finished);
    }
  }
}
