/**
 * Server-sent events as relayed: the upstream's bytes split into events, each
 * one's type read, and sent on unchanged. A `complete` event carries megabytes:
 * splitting searches only new bytes and reading skips the image (lean-json.ts).
 */
import { fail } from "./errors";
import { parseSkippingString } from "./upstream/lean-json";
import type { StreamEvent } from "./schemas";

export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
} as const;

const encoder = new TextEncoder();

/** An event of `data` with its `id:`: a line of data over several lines is sent as several `data:` lines, as the format asks. */
export function encodeData(data: string, id?: number): Uint8Array {
  const lines = data.includes("\n") ? data.split("\n").map((line) => `data: ${line}\n`).join("") : `data: ${data}\n`;
  return encoder.encode(`${id === undefined ? "" : `id: ${id}\n`}${lines}\n`);
}

// An event ends at a blank line; lines may end in LF, CRLF or CR.
const EVENT_ENDS = [Buffer.from("\n\n"), Buffer.from("\r\n\r\n"), Buffer.from("\r\r")];
/** Bytes of the longest end but one: as many as an end may have in old bytes when it ends in a new chunk. */
const OVERLAP = 3;

/** Cuts a byte stream into whole events, each with its terminating blank line. */
export class EventSplitter {
  private chunks: Buffer[] = [];
  private length = 0;
  /** The last OVERLAP bytes buffered. */
  private tail: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    // Search only the new bytes, and the last few old ones joined to the first few
    // new (an end may straddle two chunks): a megabyte event is copied once, when it is whole.
    const [straddling = 0] = eventEnds(Buffer.concat([this.tail, chunk.subarray(0, OVERLAP)]), 0);
    // No end lies wholly in the old bytes (it would have been cut), so one found there ends in `chunk`, before any found in it alone.
    const first = straddling - this.tail.length;
    const ends = first > 0 ? [first, ...eventEnds(chunk, first)] : eventEnds(chunk, 0);
    const before = this.length;
    this.chunks.push(chunk);
    this.length += chunk.length;
    if (ends.length === 0) {
      this.tail = (chunk.length >= OVERLAP ? chunk : Buffer.concat([this.tail, chunk])).subarray(-OVERLAP);
      return [];
    }
    const buffered = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks, this.length);
    // One chunk may hold many events (a proxy's buffer of keep-alives).
    const events: Buffer[] = [];
    let start = 0;
    for (const end of ends) {
      events.push(buffered.subarray(start, before + end));
      start = before + end;
    }
    const rest = buffered.subarray(start);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.length = rest.length;
    this.tail = rest.subarray(-OVERLAP);
    return events;
  }

  /** Bytes of an event that has not ended yet. */
  get pending(): number {
    return this.length;
  }
}

/** Every index just past a blank line in `bytes` after `from`: each terminator's next place is kept, so one pass serves many events. */
function eventEnds(bytes: Buffer, from: number): number[] {
  const ends: number[] = [];
  const next = EVENT_ENDS.map(() => -2); // -2: not searched yet, -1: none left
  for (;;) {
    let best = -1;
    EVENT_ENDS.forEach((end, k) => {
      let at = next[k] as number;
      if (at !== -1 && at < from) next[k] = at = bytes.indexOf(end, from);
      if (at >= 0 && (best < 0 || at + end.length < best)) best = at + end.length;
    });
    if (best < 0) return ends;
    ends.push(best);
    from = best;
  }
}

/** One event of the GPU server's stream, its bytes as they came; `type` and `data` (its JSON, the lines joined) are undefined for a comment. */
export interface UpstreamEvent {
  bytes: Buffer;
  type: string | undefined;
  data: Buffer | undefined;
}

/**
 * What one upstream event is, read without decoding its image. Only what the
 * gateway relies on is checked: the data is JSON, a `complete` event holds an
 * image (else the error table's bad response). Every other type and field is
 * the server's to add, and passes as is.
 */
export function inspectEvent(bytes: Buffer): UpstreamEvent {
  const data: Buffer[] = [];
  for (const line of splitLines(bytes)) {
    if (line.length === 0 || line[0] === 0x3a /* ":" comment */) continue;
    if (line.subarray(0, 5).toString("latin1") !== "data:") continue; // event:, id:, retry: carry nothing we relay on
    data.push(line.subarray(line[5] === 0x20 ? 6 : 5));
  }
  if (data.length === 0) return { bytes, type: undefined, data: undefined };
  const payload = data.length === 1 ? (data[0] as Buffer) : Buffer.concat(data.flatMap((part, i) => (i ? [Buffer.from("\n"), part] : [part])));
  let parsed;
  try {
    parsed = parseSkippingString(payload, "image_base64");
  } catch {
    throw fail.upstreamBadResponse("an event is not JSON");
  }
  const type = typeof parsed.value === "object" && parsed.value !== null ? (parsed.value as { type?: unknown }).type : undefined;
  if (type === "complete" && !parsed.skippedLength) throw fail.upstreamBadResponse("the complete event has no image");
  return { bytes, type: typeof type === "string" ? type : undefined, data: payload };
}

/** Lines of an event, found with native searches: the image line is megabytes. */
function splitLines(block: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  for (let start = 0; start < block.length; ) {
    const lf = block.indexOf(0x0a, start);
    const cr = block.indexOf(0x0d, start);
    const end = Math.min(lf < 0 ? block.length : lf, cr < 0 ? block.length : cr);
    lines.push(block.subarray(start, end));
    start = end + (block[end] === 0x0d && block[end + 1] === 0x0a ? 2 : 1);
  }
  return lines;
}

const KEEP_ALIVE = encoder.encode(": keep-alive\n\n");

/** The stream the client reads. Writes after its end are dropped: enqueueing then throws, and would crash the server (vercel/next.js#56529). */
export class EventStream {
  readonly readable: ReadableStream<Uint8Array>;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private ended = false;
  private keepAlive: NodeJS.Timeout | undefined;

  constructor(
    private readonly keepAliveMs: number,
    onCancel: () => void,
  ) {
    this.readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.controller = controller;
      },
      cancel: () => {
        this.finish();
        onCancel();
      },
    });
  }

  /** The 200 response; comments keep idle proxies from closing it from now on. */
  response(): Response {
    this.keepAlive ??= setInterval(() => {
      this.write(KEEP_ALIVE);
    }, this.keepAliveMs);
    return new Response(this.readable, { headers: SSE_HEADERS });
  }

  /** An event of the gateway's, or one as kept (its JSON, and its id to resume after). */
  send(event: StreamEvent | string, id?: number): void {
    this.write(encodeData(typeof event === "string" ? event : JSON.stringify(event), id));
  }

  comment(text: string): void {
    this.write(encoder.encode(`: ${text.replace(/[\r\n]/g, " ")}\n\n`));
  }

  write(bytes: Uint8Array): void {
    if (this.ended) return;
    this.controller.enqueue(bytes);
  }

  /** Ends with a final error event (the error table's kind, and its message), never a silent cut. */
  fail(kind: string, message: string): void {
    this.send({ type: "error", kind, message });
    this.end();
  }

  end(): void {
    if (this.ended) return;
    this.finish();
    this.controller.close();
  }

  private finish(): void {
    this.ended = true;
    clearInterval(this.keepAlive);
  }
}
