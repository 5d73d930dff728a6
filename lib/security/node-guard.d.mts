import type { ServerResponse } from "node:http";

/** A route's Content-Length, which Next would drop: the guard restores it (node-guard.mjs). */
export const CONTENT_LENGTH_HEADER: string;

/** On every answer (see node-guard.mjs; on Vercel, next.config.mjs sets them). */
export const SECURITY_HEADERS: readonly (readonly [string, string])[];

/** See node-guard.mjs: guards every Node http server of this process, `onResponse` seeing each response; the peer stamp's header. */
export function installNodeGuard(onResponse?: (response: ServerResponse) => void): { header: string };

/** The pages' paths (see node-guard.mjs), as a Next matcher source. */
export const PAGE_MATCHER: string;

/** What a page refuses (see node-guard.mjs). */
export function pageProblem(method: string, path: string): { status: number; detail: string; headers?: Record<string, string> } | undefined;

/** A page's Content-Security-Policy around its nonce. */
export function contentSecurityPolicy(nonce: string, path: string): string;
