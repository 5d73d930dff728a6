// The types of node-guard.mjs, whose comments say what each export is for.
import type { ServerResponse } from "node:http";

export const CONTENT_LENGTH_HEADER: string;

export const SECURITY_HEADERS: readonly (readonly [string, string])[];

export function installNodeGuard(onResponse?: (response: ServerResponse) => void): { header: string };

export const PAGE_MATCHER: string;

export function pageProblem(method: string, path: string): { status: number; detail: string; headers?: Record<string, string> } | undefined;

export function contentSecurityPolicy(nonce: string, path: string): string;
