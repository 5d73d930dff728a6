import type { ServerResponse } from "node:http";

/** A route's Content-Length, which Next would drop: the guard restores it (node-guard.mjs). */
export const CONTENT_LENGTH_HEADER: string;

/** On every answer (see node-guard.mjs; on Vercel, next.config.mjs sets them). */
export const SECURITY_HEADERS: readonly (readonly [string, string])[];

/** See node-guard.mjs: guards every Node http server of this process, `onResponse` seeing each response; the peer stamp's header. */
export function installNodeGuard(onResponse?: (response: ServerResponse) => void): { header: string };
