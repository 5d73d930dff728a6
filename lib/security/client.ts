import { randomBytes } from "node:crypto";
import { subscribe } from "node:diagnostics_channel";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { isIP } from "node:net";
import { fail } from "../errors";

/**
 * Who a request comes from, for per-client rate limits. Route handlers do not
 * see the socket, and `next start` sets X-Forwarded-For only when the client
 * sent none (`??=` in next/dist/server/base-server.js). So the gateway stamps
 * the peer address on each request under a header name random per process:
 * from the first request under `npm start` (scripts/peer-stamp.mjs), else from
 * instrumentation.ts on, the requests a bare `next start` queued before that
 * sharing one key. On Vercel, the address its edge writes stands in.
 */
export interface PeerStamp {
  readonly header: string;
}

/** What Node passes on and Next answers with a 500 and a stack trace (fetch's Request refuses it); Node itself refuses CONNECT and TRACK. */
const REFUSED_METHODS = new Set(["TRACE"]);
const ALLOWED = ["GET", "HEAD", "POST", "OPTIONS"];

/**
 * Puts itself in front of every Node http server's request listeners at its
 * first request (`http.server.request.start` publishes before `request`): each
 * request gets its peer stamp, what would crash Next (TRACE, `OPTIONS *`) gets
 * its JSON answer here, and each response is watched by the send timeout.
 */
export function guardNodeServers(sendTimeoutMs: number): PeerStamp {
  // `npm start` stamps from the first request on (scripts/peer-stamp.mjs); only a bare `next start` needs this stamp.
  const preloaded = (globalThis as Record<symbol, unknown>)[Symbol.for("text2image-gateway.peer-header")];
  const stampHere = typeof preloaded !== "string";
  const header = stampHere ? `x-gateway-peer-${randomBytes(12).toString("hex")}` : preloaded;
  const watchdog = new SendWatchdog(sendTimeoutMs);
  const guarded = new WeakSet<Server>();
  subscribe("http.server.request.start", (message) => {
    const { server } = message as { server: Server };
    if (guarded.has(server)) return;
    guarded.add(server);
    const emit = server.emit.bind(server);
    server.emit = function (event: string | symbol, ...args: unknown[]) {
      if (event === "request") {
        const [request, response] = args as [IncomingMessage, ServerResponse];
        if (stampHere) request.headers[header] = request.socket.remoteAddress ?? "";
        if (refused(request, response)) return true;
        watchdog.watch(response);
      }
      return emit(event, ...args);
    } as typeof server.emit;
  });
  return { header };
}

/**
 * Cuts a response whose client took none of it for `timeoutMs` while some waits
 * to be sent (nginx's send_timeout): else a client that stops reading holds its
 * megabytes in memory until it leaves. One with nothing unsent (a generation
 * still running) is never cut. Progress: bytes handed to the kernel.
 */
class SendWatchdog {
  private readonly watched = new Map<ServerResponse, { sent: number; since: number }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly timeoutMs: number) {}

  watch(response: ServerResponse): void {
    this.watched.set(response, { sent: 0, since: performance.now() });
    response.once("close", () => {
      this.watched.delete(response);
    });
    this.timer ??= setInterval(() => {
      this.check();
    }, Math.min(1000, this.timeoutMs / 4)).unref();
  }

  private check(): void {
    const now = performance.now();
    for (const [response, progress] of this.watched) {
      const socket = response.socket;
      if (!socket) continue;
      const sent = socket.bytesWritten - socket.writableLength;
      // Unsent bytes wait in the response (while the socket pushes back) or in the socket.
      if (response.writableLength + socket.writableLength === 0 || sent !== progress.sent) {
        progress.sent = sent;
        progress.since = now;
      } else if (now - progress.since >= this.timeoutMs) {
        this.watched.delete(response);
        // A reset, not a close: a closing socket would still try to deliver what the kernel holds for it.
        socket.resetAndDestroy();
      }
    }
  }
}

/** Answers a request no route can take; false for every other. */
function refused(request: IncomingMessage, response: ServerResponse): boolean {
  const method = request.method ?? "";
  const target = request.url ?? "";
  // Origin form (a path) and absolute form (what a proxy is sent) are for Next; `*` and the like are not.
  const servable = target.startsWith("/") || /^https?:\/\//i.test(target);
  const error = REFUSED_METHODS.has(method) ? fail.methodNotAllowed(method, ALLOWED) : servable ? undefined : fail.badTarget(target);
  if (!error) return false;
  const body = JSON.stringify({ detail: error.detail });
  response.writeHead(error.status, { ...error.headers, "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  response.end(body);
  return true;
}

const UNSTAMPED = "unstamped";

/**
 * The socket's peer, or with `trustedHops` proxies in front the address the
 * outermost trusted one saw (Infinity: the left-most of X-Forwarded-For). IPv6
 * clients are grouped by /64, the block one subscriber usually holds.
 */
export function clientAddress(headers: Headers, stamp: PeerStamp | undefined, trustedHops: number): string {
  const forwarded = (headers.get("x-forwarded-for") ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  // A request the stamp missed (Next takes connections, and queues their requests, before start-up ends)
  // cannot be told apart from its neighbours: they share one key, rather than each choose its own.
  const peer = stamp ? headers.get(stamp.header) || UNSTAMPED : undefined;
  // Nearest first: the socket's peer, then each proxy's view from the right.
  const chain = peer === undefined ? forwarded.reverse() : [peer, ...forwarded.reverse()];
  const chosen = chain[Math.min(trustedHops, chain.length - 1)] ?? "unknown";
  return normalizeAddress(chosen);
}

/** An address as a rate-limit key: ports and brackets dropped, IPv4-mapped IPv6 as IPv4, IPv6 as its /64. */
export function normalizeAddress(raw: string): string {
  let address = raw.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (bracketed?.[1]) address = bracketed[1];
  else if (/^\d{1,3}(?:\.\d{1,3}){3}:\d+$/.test(address)) address = address.slice(0, address.lastIndexOf(":"));
  address = address.replace(/%.*$/, ""); // an IPv6 zone id
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped?.[1]) return mapped[1];
  if (isIP(address) === 6) return `${expandIPv6(address).slice(0, 4).join(":")}::/64`;
  return address.slice(0, 64);
}

/** The eight hextets of an IPv6 address, without leading zeros (an embedded IPv4 tail becomes two). */
function expandIPv6(address: string): string[] {
  let text = address.toLowerCase();
  const v4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const zeros = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill("0");
  return [...left, ...zeros, ...right].map((part) => part.replace(/^0+(?=.)/, ""));
}
