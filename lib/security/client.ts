import type { ServerResponse } from "node:http";
import { isIP } from "node:net";
import { installNodeGuard } from "./node-guard.mjs";

/**
 * Who a request comes from, for per-client rate limits. Route handlers do not
 * see the socket, and `next start` sets X-Forwarded-For only when the client
 * sent none (`??=` in next/dist/server/base-server.js): the guard stamps the
 * peer address on each request under this header (lib/security/node-guard.mjs).
 * On Vercel, the address its edge writes stands in.
 */
export interface PeerStamp {
  readonly header: string;
}

/**
 * Guards every Node http server (lib/security/node-guard.mjs: the peer stamp,
 * and answers for what would crash Next or leak its socket), and watches each
 * response with the send timeout.
 */
export function guardNodeServers(sendTimeoutMs: number): PeerStamp {
  return installNodeGuard(sendWatchdog(sendTimeoutMs));
}

/**
 * Cuts a response whose client took none of it for `timeoutMs` while some waits
 * to be sent (nginx's send_timeout): else a client that stops reading holds its
 * megabytes in memory until it leaves. One with nothing unsent (a generation
 * still running) is never cut. Progress: bytes handed to the kernel.
 */
function sendWatchdog(timeoutMs: number): (response: ServerResponse) => void {
  const watched = new Map<ServerResponse, { sent: number; since: number }>();
  let timer: NodeJS.Timeout | undefined;
  const check = () => {
    const now = performance.now();
    for (const [response, progress] of watched) {
      const socket = response.socket;
      if (!socket) continue;
      const sent = socket.bytesWritten - socket.writableLength;
      // Unsent bytes wait in the response (while the socket pushes back) or in the socket.
      if (response.writableLength + socket.writableLength === 0 || sent !== progress.sent) {
        progress.sent = sent;
        progress.since = now;
      } else if (now - progress.since >= timeoutMs) {
        watched.delete(response);
        // A reset, not a close: a closing socket would still try to deliver what the kernel holds for it.
        socket.resetAndDestroy();
      }
    }
  };
  // One listener for all ("close" comes once): no closure made per response.
  function forget(this: ServerResponse) {
    watched.delete(this);
  }
  return (response) => {
    watched.set(response, { sent: 0, since: performance.now() });
    response.on("close", forget);
    timer ??= setInterval(check, Math.min(1000, timeoutMs / 4)).unref();
  };
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
  if (stamp) forwarded.push(headers.get(stamp.header) || UNSTAMPED);
  // Nearest first: the socket's peer, then each proxy's view from the right.
  const chain = forwarded.reverse();
  return normalizeAddress(chain[Math.min(trustedHops, chain.length - 1)] ?? "unknown");
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
