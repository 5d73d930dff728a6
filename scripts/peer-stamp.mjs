/**
 * Preloaded by `npm start` (`node --import ./scripts/peer-stamp.mjs ...`,
 * package.json): stamps every request with its socket's address from the
 * process's very first, before Next has loaded anything of the gateway. Next
 * listens, and queues requests, while it starts, so a stamp that began only
 * in instrumentation.ts would miss those. The header name is random per
 * process (no client can send it) and lib/security/client.ts reads it from
 * here. Plain JavaScript: it runs before any bundler or loader.
 */
import { randomBytes } from "node:crypto";
import { subscribe } from "node:diagnostics_channel";

const key = Symbol.for("text2image-gateway.peer-header");
const header = `x-gateway-peer-${randomBytes(12).toString("hex")}`;
globalThis[key] = header;
subscribe("http.server.request.start", ({ request, socket }) => {
  request.headers[header] = socket.remoteAddress ?? "";
});
