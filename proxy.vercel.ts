import { NextResponse } from "next/server";
import type { NextRequest } from "next/server";
import { contentSecurityPolicy, pageProblem } from "./lib/security/node-guard.mjs";

/**
 * On Vercel only (next.config.mjs's pageExtensions take this file there),
 * where no Node server is ours: what the Node-level guard does for the pages
 * elsewhere (lib/security/node-guard.mjs), their refusals and their
 * Content-Security-Policy with a fresh nonce, which Next reads from the
 * request's policy and puts on its own scripts. Vercel matches the matcher in
 * its routing layer; a server of ours would match it in Next's router on
 * every request, the API's included.
 */
export function proxy(request: NextRequest) {
  const { pathname } = request.nextUrl;
  const problem = pageProblem(request.method, pathname);
  if (problem) return Response.json({ detail: problem.detail }, { status: problem.status, headers: problem.headers });
  const nonce = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(18))));
  const policy = contentSecurityPolicy(nonce, pathname);
  const headers = new Headers(request.headers);
  headers.set("content-security-policy", policy);
  headers.set("x-nonce", nonce);
  const response = NextResponse.next({ request: { headers } });
  response.headers.set("Content-Security-Policy", policy);
  return response;
}

export const config = {
  matcher: [
    {
      // Pages only, as lib/security/node-guard.mjs's PAGE_MATCHER (Next reads this as a literal).
      source: "/((?!api(?:/|$)|v1(?:/|$)|_next/static/|_next/image|favicon\\.ico$|health$|metrics$|generate$|generate-stream$).*)",
      missing: [
        { type: "header", key: "next-router-prefetch" },
        { type: "header", key: "purpose", value: "prefetch" },
      ],
    },
  ],
};
