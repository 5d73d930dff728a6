/**
 * Preloaded by `npm start` (`node --import ./scripts/preload.mjs ...`,
 * package.json): guards Node's HTTP servers (lib/security/node-guard.mjs) from
 * the process's very first connection, before Next has loaded anything of the
 * gateway. Next listens, and queues requests, while it starts, so a guard
 * that began only in instrumentation.ts would miss those: their peer stamp,
 * and an Upgrade request's socket, which Next would leave open for good.
 * Plain JavaScript: it runs before any bundler or loader.
 */
import { installNodeGuard } from "../lib/security/node-guard.mjs";

installNodeGuard();
