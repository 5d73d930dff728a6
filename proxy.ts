import { NextResponse } from "next/server";
import type { NextRequest } from "next/server";
import { errorResponse, fail } from "./lib/errors";

/**
 * Security headers for the pages (/, /docs, 404s): a Content-Security-Policy with
 * a fresh nonce per request. Next reads the nonce from the CSP request header
 * and puts it on its own scripts; 'strict-dynamic' lets those load the rest,
 * and no other script runs. The matcher keeps the API out: its hot path pays
 * nothing here (its other headers come from lib/security/node-guard.mjs and lib/http.ts).
 */
export function proxy(request: NextRequest) {
  const { pathname } = request.nextUrl;
  // The API's paths in another case (/API/generate) come here: a JSON 404 as under /api, not the page's HTML.
  if (/^\/api(?:\/|$)/i.test(pathname)) return errorResponse(fail.notFound(pathname));
  // The pages take no body: no server actions here.
  if (request.method !== "GET" && request.method !== "HEAD") return errorResponse(fail.methodNotAllowed(request.method, ["GET", "HEAD"]));
  const nonce = newNonce();
  const policy = contentSecurityPolicy(nonce, pathname);
  const headers = new Headers(request.headers);
  headers.set("content-security-policy", policy);
  headers.set("x-nonce", nonce);
  const response = NextResponse.next({ request: { headers } });
  response.headers.set("Content-Security-Policy", policy);
  return response;
}

function newNonce(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(18));
  return btoa(String.fromCharCode(...bytes));
}

function contentSecurityPolicy(nonce: string, pathname: string): string {
  const dev = process.env.NODE_ENV === "development";
  // The built-in page needs no inline style but Next's own (which get the nonce). The /docs viewer
  // (Scalar, a Vue app) and Next's 404 page set style attributes and <style> tags without one.
  const strictStyles = pathname === "/" && !dev;
  const directives = [
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
  ];
  return directives.join("; ");
}

export const config = {
  matcher: [
    {
      // Pages only: not /api or /v1, nor the original gateway's paths (app/health/ and so on), nor Next's static files.
      source: "/((?!api(?:/|$)|v1(?:/|$)|_next/static/|_next/image|favicon\\.ico$|health$|metrics$|generate$|generate-stream$).*)",
      missing: [
        { type: "header", key: "next-router-prefetch" },
        { type: "header", key: "purpose", value: "prefetch" },
      ],
    },
  ],
};
