/**
 * The gateway's guard at Node's HTTP layer, in front of Next: what Next would
 * answer with a 500, with nothing, or never, is answered here, each request
 * is stamped with its socket's address (route handlers do not see the
 * socket; lib/security/client.ts reads the stamp), and each answer gets the
 * security headers. Plain JavaScript with no
 * import of the gateway's own: `npm start` preloads it (scripts/preload.mjs)
 * before Next loads anything, so it guards from the first connection; a bare
 * `next start` installs it from instrumentation on. Its state lives on
 * globalThis, as Next bundles a copy of this module per route.
 */
import { randomBytes } from "node:crypto";
import { subscribe } from "node:diagnostics_channel";
import { Server } from "node:http";

const STATE = Symbol.for("text2image-gateway.node-guard");

/**
 * Next drops a route's Content-Length (send-response.js: it may have decoded
 * a fetched body), so a file streamed with a known length would go chunked.
 * A route that knows its length also sets it under this name; the guard makes
 * it the Content-Length as Next copies the headers onto Node's response.
 */
export const CONTENT_LENGTH_HEADER = "x-gateway-content-length";

/**
 * On every answer: API, pages, static files, the guard's own refusals (the
 * pages' Content-Security-Policy comes from proxy.ts, with a nonce per
 * request). Set on Node's response as the request arrives: as Next's
 * headers() rule, or a Web Headers copy in each route, they cost /api/health
 * a tenth of its throughput. On Vercel, where no Node server is ours,
 * next.config.mjs's headers() sets them.
 */
export const SECURITY_HEADERS = [
  ["X-Content-Type-Options", "nosniff"],
  ["Referrer-Policy", "no-referrer"],
  ["X-Frame-Options", "DENY"],
];

/** What Node passes on and Next answers with a 500 and a stack trace (fetch's Request refuses it); Node itself refuses CONNECT and TRACK. */
const REFUSED_METHODS = new Set(["TRACE"]);
const ALLOWED = ["GET", "HEAD", "POST", "OPTIONS"];
/** RFC 3986's host (a reg-name, an IPv4 address or a bracketed IP literal) and an optional port: a Host field value that is not one is a 400 (RFC 9112 §3.2). */
const VALID_HOST = /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::\d*)?$/;

/**
 * Guards every Node http server of this process from its next connection on
 * (idempotent); returns the peer stamp's header name, random per process so
 * no client can send it, and a hook that sees each response Next will write.
 * @returns {{ header: string; watchResponses: (watch: (response: import("node:http").ServerResponse) => void) => void }}
 */
export function installNodeGuard() {
  const state = (globalThis[STATE] ??= { header: `x-gateway-peer-${randomBytes(12).toString("hex")}`, guarded: new WeakSet(), onResponse: undefined, installed: false });
  if (!state.installed) {
    state.installed = true;
    // Published for each accepted socket before its server's 'connection' listeners run: the server is guarded before it parses a byte.
    subscribe("net.server.socket", (message) => {
      const server = /** @type {{ socket: { server?: unknown } }} */ (message).socket.server;
      if (server instanceof Server && !state.guarded.has(server)) guard(server, state);
    });
  }
  return {
    header: state.header,
    watchResponses: (watch) => {
      state.onResponse = watch;
    },
  };
}

/** @param {Server} server */
function guard(server, state) {
  state.guarded.add(server);
  const ownUpgrades = server.shouldUpgradeCallback;
  // No route serves a WebSocket or another protocol, and Next leaves an upgrade it does not proxy unanswered with its
  // socket open for good. Any other upgrade (h2c from `curl --http2`) is ignored, as RFC 9110 §7.8 allows: served as HTTP/1.1.
  server.shouldUpgradeCallback = (request) => (developing() ? ownUpgrades.call(server, request) : isWebSocket(request));
  const emit = server.emit;
  server.emit = function (event, ...args) {
    if (event === "upgrade" && !developing()) {
      refuseUpgrade(args[0], args[1]);
      return true;
    }
    if (event === "request") {
      const [request, response] = args;
      request.headers[state.header] = request.socket.remoteAddress ?? "";
      for (const [name, value] of SECURITY_HEADERS) response.setHeader(name, value);
      if (refused(request, response)) return true;
      keepContentLength(response);
      state.onResponse?.(response);
    }
    return emit.call(this, event, ...args);
  };
}

/** @param {import("node:http").ServerResponse} response */
function keepContentLength(response) {
  const setHeader = response.setHeader;
  response.setHeader = function (name, value) {
    if (name.toLowerCase() === CONTENT_LENGTH_HEADER && /^\d+$/.test(String(value))) return setHeader.call(this, "content-length", String(value));
    return setHeader.call(this, name, value);
  };
}

/** `next dev` serves its hot reload over a WebSocket: left to Next there. */
function developing() {
  return process.env.NODE_ENV === "development";
}

/** @param {import("node:http").IncomingMessage} request */
function isWebSocket(request) {
  return /(?:^|,)\s*websocket\s*(?:,|$)/i.test(request.headers.upgrade ?? "");
}

/**
 * A WebSocket handshake: RFC 6455 §4.2.2's refusal, an HTTP error, then the
 * socket closed (it left Node's HTTP parser, so nothing else would close it).
 * @param {import("node:http").IncomingMessage} request
 * @param {import("node:net").Socket} socket
 */
function refuseUpgrade(request, socket) {
  socket.on("error", () => undefined);
  const target = request.url ?? "";
  const body = errorBody(
    target,
    `No WebSocket is served at ${pathOf(target).slice(0, 100)}: this gateway speaks HTTP, and streams progress as server-sent events (POST /api/generate-stream)`,
  );
  const head = ["HTTP/1.1 400 Bad Request", "Content-Type: application/json", `Content-Length: ${Buffer.byteLength(body)}`, "Connection: close"];
  socket.end(`${head.join("\r\n")}\r\n\r\n${body}`, () => {
    socket.destroy();
  });
}

/**
 * Answers a request no route can take, as JSON (OpenAI's shape under /v1);
 * false for every other.
 * @param {import("node:http").IncomingMessage} request
 * @param {import("node:http").ServerResponse} response
 */
function refused(request, response) {
  const problem = problemOf(request);
  if (!problem) return false;
  const body = errorBody(request.url ?? "", problem.detail);
  response.writeHead(problem.status, { ...problem.headers, "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  response.end(body);
  return true;
}

/**
 * @param {import("node:http").IncomingMessage} request
 * @returns {{ status: number; detail: string; headers?: Record<string, string> } | undefined}
 */
function problemOf(request) {
  const method = request.method ?? "";
  const target = request.url ?? "";
  if (REFUSED_METHODS.has(method)) {
    return { status: 405, detail: `Method ${method} not allowed; use ${ALLOWED.join(" or ")}`, headers: { Allow: ALLOWED.join(", ") } };
  }
  // Origin form (a path) and absolute form (what a proxy is sent) are for Next; `*` and the like are not.
  if (!target.startsWith("/") && !/^https?:\/\//i.test(target)) {
    return { status: 400, detail: `Request target ${target.slice(0, 100)} is not served here: ask for a path` };
  }
  const hosts = hostFields(request.rawHeaders);
  if (hosts.length > 1) return { status: 400, detail: `The request has ${hosts.length} Host headers: send one` };
  if (hosts[0] !== undefined && !VALID_HOST.test(hosts[0])) return { status: 400, detail: "The Host header is not a valid host[:port]" };
  // Next decodes path parameters with decodeURIComponent, and answers what it cannot decode with a 500.
  const path = pathOf(target);
  try {
    decodeURIComponent(path);
  } catch {
    return { status: 400, detail: `Request target ${path.slice(0, 100)} has a malformed percent-escape: % must be followed by two hex digits of UTF-8` };
  }
  return undefined;
}

/** @param {string[]} rawHeaders */
function hostFields(rawHeaders) {
  const hosts = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]?.toLowerCase() === "host") hosts.push(rawHeaders[i + 1] ?? "");
  }
  return hosts;
}

/** The path of an origin-form or absolute-form target, without its query. @param {string} target */
function pathOf(target) {
  const path = target.replace(/^https?:\/\/[^/?#]*/i, "");
  const end = path.search(/[?#]/);
  return end < 0 ? path : path.slice(0, end);
}

/**
 * The JSON of an error answer: under /v1 in OpenAI's shape, for its SDKs (as lib/errors.ts openAiError).
 * @param {string} target
 * @param {string} detail
 */
function errorBody(target, detail) {
  const openAi = /^\/v1(?:[/?#]|$)/.test(pathOf(target));
  return JSON.stringify(openAi ? { error: { message: detail, type: "invalid_request_error", param: null, code: "invalid_request" } } : { detail });
}
