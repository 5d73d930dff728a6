import { randomBytes } from "node:crypto";
import { subscribe } from "node:diagnostics_channel";
import type { IncomingMessage } from "node:http";
import { isIP } from "node:net";
import type { Socket } from "node:net";

/**
 * Who a request comes from, for per-client rate limits.
 *
 * Next's route handlers do not see the socket. `next start` does set
 * `x-forwarded-for` to the socket's address, but only when the client sent
 * none (`??=` in next/dist/server/base-server.js): a client that sends its own
 * X-Forwarded-For chooses its key. So the gateway stamps the true peer address
 * on each request itself, from Node's `http.server.request.start` diagnostics
 * channel, under a header name that is random per process (a client cannot
 * send it). The stamp starts once this module is first loaded (the first
 * request to any route); until then, and on hosts where no Node http server
 * runs the app, the address Next passes in X-Forwarded-For stands in.
 */
export interface PeerStamp {
  /** The header carrying the socket's address, once stamping runs. */
  readonly header: string;
}

/** Subscribes to the http server's requests; call once per process. */
export function stampPeers(): PeerStamp {
  const header = `x-gateway-peer-${randomBytes(12).toString("hex")}`;
  subscribe("http.server.request.start", (message) => {
    const { request, socket } = message as { request: IncomingMessage; socket: Socket };
    request.headers[header] = socket.remoteAddress ?? "";
  });
  return { header };
}

/**
 * The client's address: the socket's peer, or with `trustedHops` proxies in
 * front, the address the outermost trusted one saw (Infinity: the left-most
 * of X-Forwarded-For). IPv6 clients are grouped by /64, the block one
 * subscriber usually holds.
 */
export function clientAddress(headers: Headers, stamp: PeerStamp | undefined, trustedHops: number): string {
  const forwarded = (headers.get("x-forwarded-for") ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  const peer = (stamp && headers.get(stamp.header)) || undefined;
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
