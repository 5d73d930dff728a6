/**
 * The gateway's guard at Node's HTTP layer, in front of Next: what Next would
 * answer with a 500, with nothing, or never, is answered here, each request
 * is stamped with its socket's address (route handlers do not see the
 * socket; lib/security/client.ts reads the stamp), each answer gets the
 * security headers and each page its Content-Security-Policy. Plain JavaScript with no
 * import of the gateway's own: `npm start` preloads it (scripts/preload.mjs)
 * before Next loads anything, so it guards from the first connection; a bare
 * `next start` installs it from instrumentation on. Its state lives on
 * globalThis, as Next bundles a copy of this module per route.
 */
import { randomBytes } from "node:crypto";
import { subscribe } from "node:diagnostics_channel";
import { Server, ServerResponse } from "node:http";

const STATE = Symbol.for("text2image-gateway.node-guard");

/**
 * Next drops a route's Content-Length (send-response.js: it may have decoded
 * a fetched body), so a file or JSON of known length would go chunked.
 * A route that knows its length also sets it under this name; the guard makes
 * it the Content-Length as Next copies the headers onto Node's response.
 */
export const CONTENT_LENGTH_HEADER = "x-gateway-content-length";

/**
 * On every answer: API, pages, static files, the guard's own refusals (the
 * pages' Content-Security-Policy is set beside them, with a nonce per
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
const REFUSED_METHOD = "TRACE";
const ALLOWED = ["GET", "HEAD", "POST", "OPTIONS"];
/** RFC 3986's host (a reg-name, an IPv4 address or a bracketed IP literal) and an optional port: a Host field value that is not one is a 400 (RFC 9112 §3.2). */
const VALID_HOST = /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::\d*)?$/;

/**
 * Guards every Node http server of this process from its next connection on
 * (idempotent), `onResponse` seeing each response Next will write; returns the
 * peer stamp's header name, random per process so no client can send it.
 */
export function installNodeGuard(onResponse) {
  let state = globalThis[STATE];
  if (!state) {
    state = globalThis[STATE] = { header: `x-gateway-peer-${randomBytes(12).toString("hex")}`, onResponse: undefined };
    const guarded = new WeakSet();
    // Published for each accepted socket before its server's 'connection' listeners run: the server is guarded before it parses a byte.
    subscribe("net.server.socket", ({ socket: { server } }) => {
      if (!(server instanceof Server) || guarded.has(server)) return;
      guarded.add(server);
      guard(server, state);
    });
    keepContentLength();
  }
  if (onResponse) state.onResponse = onResponse;
  return { header: state.header };
}

function guard(server, state) {
  // No route serves a WebSocket or another protocol, and Next leaves an upgrade it does not proxy unanswered with its socket
  // open for good. So every upgrade is served as HTTP/1.1, as RFC 9110 §7.8 allows (h2c from `curl --http2` gets its answer),
  // a WebSocket handshake refused there. `next dev` serves its hot reload over a WebSocket: left to Next there.
  if (process.env.NODE_ENV !== "development") server.shouldUpgradeCallback = () => false;
  const emit = server.emit;
  server.emit = function (event, ...args) {
    if (event === "request") {
      const [request, response] = args;
      request.headers[state.header] = request.socket.remoteAddress ?? "";
      for (const [name, value] of SECURITY_HEADERS) response.setHeader(name, value);
      const path = pathOf(request.url ?? "");
      const page = PAGE.test(path);
      const problem = problemOf(request, path, page);
      if (problem) return refuse(response, path, problem);
      if (page) {
        const nonce = randomBytes(18).toString("base64");
        const policy = contentSecurityPolicy(nonce, path);
        // Next puts the nonce of the request's policy on its own scripts while rendering (app/layout.tsx reads x-nonce); a client's own are replaced.
        request.headers["content-security-policy"] = policy;
        request.headers["x-nonce"] = nonce;
        response.setHeader("Content-Security-Policy", policy);
      }
      state.onResponse?.(response);
    }
    return emit.call(this, event, ...args);
  };
}

/** Makes a route's CONTENT_LENGTH_HEADER the Content-Length, once for every response (no wrapper made per request). */
function keepContentLength() {
  const setHeader = ServerResponse.prototype.setHeader;
  ServerResponse.prototype.setHeader = function (name, value) {
    // The length first: lower-casing every header name Next sets was a kilobyte of garbage an answer.
    if (name.length === CONTENT_LENGTH_HEADER.length && name.toLowerCase() === CONTENT_LENGTH_HEADER && /^\d+$/.test(String(value))) {
      return setHeader.call(this, "content-length", String(value));
    }
    return setHeader.call(this, name, value);
  };
}

/** Answers a request no route can take, as JSON: under /v1 in OpenAI's shape, for its SDKs (as lib/errors.ts openAiError). */
function refuse(response, path, { status, detail, headers }) {
  const openAi = /^\/v1(?:\/|$)/.test(path);
  const body = JSON.stringify(openAi ? { error: { message: detail, type: "invalid_request_error", param: null, code: "invalid_request" } } : { detail });
  response.writeHead(status, { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  response.end(body);
  return true;
}

function problemOf(request, path, page) {
  const method = request.method ?? "";
  const target = request.url ?? "";
  const upgrade = request.headers.upgrade;
  // RFC 6455 §4.2.2's refusal of a WebSocket handshake: an HTTP error, and the connection closed.
  if (upgrade !== undefined && /(?:^|,)\s*websocket\s*(?:,|$)/i.test(upgrade)) {
    const detail = `No WebSocket is served at ${path.slice(0, 100)}: this gateway speaks HTTP, and streams progress as server-sent events (POST /api/generate-stream)`;
    return { status: 400, detail, headers: { Connection: "close" } };
  }
  if (method === REFUSED_METHOD) {
    return { status: 405, detail: `Method ${method} not allowed; use ${ALLOWED.join(" or ")}`, headers: { Allow: ALLOWED.join(", ") } };
  }
  // Origin form (a path) and absolute form (what a proxy is sent) are for Next; `*` and the like are not.
  if (!target.startsWith("/") && !/^https?:\/\//i.test(target)) {
    return { status: 400, detail: `Request target ${target.slice(0, 100)} is not served here: ask for a path` };
  }
  let hosts = 0;
  for (let i = 0; i < request.rawHeaders.length; i += 2) {
    const name = request.rawHeaders[i];
    if (name.length === 4 && name.toLowerCase() === "host") hosts++;
  }
  if (hosts > 1) return { status: 400, detail: `The request has ${hosts} Host headers: send one` };
  if (hosts === 1 && !VALID_HOST.test(request.headers.host)) return { status: 400, detail: "The Host header is not a valid host[:port]" };
  // Next decodes path parameters with decodeURIComponent, and answers what it cannot decode with a 500.
  if (target.includes("%")) {
    try {
      decodeURIComponent(path);
    } catch {
      return { status: 400, detail: `Request target ${path.slice(0, 100)} has a malformed percent-escape: % must be followed by two hex digits of UTF-8` };
    }
  }
  return page ? pageProblem(method, path) : undefined;
}

/**
 * Every path but the API's (under /api or /v1, or an original gateway path)
 * and Next's static files: the pages, and what is not there. The same as
 * lib/routes's pageMatcher(), which tests/unit/routes.test.ts holds it to; a
 * literal, as proxy.vercel.ts's matcher must be.
 */
export const PAGE_MATCHER = "/((?!api(?:/|$)|v1(?:/|$)|_next/static/|_next/image|favicon\\.ico$|health$|metrics$|generate$|generate-stream$).*)";
const PAGE = new RegExp(`^${PAGE_MATCHER}$`);

/**
 * What a page refuses, in the API's JSON rather than its HTML: another method
 * than GET or HEAD (no server actions here), and the API's paths in another case (/API/generate).
 */
export function pageProblem(method, path) {
  if (/^\/api(?:\/|$)/i.test(path)) return { status: 404, detail: `No endpoint at ${path}` };
  if (method !== "GET" && method !== "HEAD") return { status: 405, detail: `Method ${method} not allowed; use GET or HEAD`, headers: { Allow: "GET, HEAD" } };
  return undefined;
}

/**
 * A page's policy: its scripts are Next's, which carry the nonce; 'strict-dynamic'
 * lets those load the rest, and no other script runs.
 */
export function contentSecurityPolicy(nonce, path) {
  const dev = process.env.NODE_ENV === "development";
  // The built-in page needs no inline style but Next's own (which get the nonce). The /docs viewer
  // (Scalar, a Vue app) and Next's 404 page set style attributes and <style> tags without one.
  const strictStyles = path === "/" && !dev;
  return [
    "default-src 'self'",
    // React's development build evaluates code for its error overlays; production needs no eval.
    `script-src 'self' 'nonce-${nonce}' 'strict-dynamic'${dev ? " 'unsafe-eval'" : ""}`,
    // A nonce would make browsers ignore 'unsafe-inline': one or the other.
    `style-src 'self' ${strictStyles ? `'nonce-${nonce}'` : "'unsafe-inline'"}`,
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
}

/** The path of an origin-form or absolute-form target, without its query. */
function pathOf(target) {
  const path = target.startsWith("/") ? target : target.replace(/^https?:\/\/[^/?#]*/i, "");
  const end = path.search(/[?#]/);
  return end < 0 ? path : path.slice(0, end);
}
