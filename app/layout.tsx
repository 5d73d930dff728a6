import type { Metadata, Viewport } from "next";
import { headers } from "next/headers";
import type { ReactNode } from "react";
import "./globals.css";

export const metadata: Metadata = {
  title: "Text-to-Image Gateway",
  description: "Generate images on a self-hosted GPU server through this gateway",
};

export const viewport: Viewport = {
  width: "device-width",
  initialScale: 1,
  colorScheme: "light dark",
};

/**
 * Runs before any bundle: zod 4 probes `new Function("")` when its first object
 * schema is built (to compile fast parsers) and, under this CSP, the browser
 * reports that probe as a violation even though zod catches it. `jitless` skips
 * the probe; zod keeps its global config at globalThis.__zod_globalConfig
 * (tests/unit/security-csp.test.ts holds it to that).
 */
const ZOD_JITLESS = "globalThis.__zod_globalConfig=Object.assign(globalThis.__zod_globalConfig||{},{jitless:true});";

export default async function RootLayout({ children }: { children: ReactNode }) {
  // Reading the request makes every page render per request, never prerendered:
  // Next puts the CSP nonce of proxy.ts on its own scripts while rendering.
  const nonce = (await headers()).get("x-nonce") ?? undefined;
  return (
    <html lang="en">
      <head>
        <script nonce={nonce} dangerouslySetInnerHTML={{ __html: ZOD_JITLESS }} />
      </head>
      <body>{children}</body>
    </html>
  );
}
