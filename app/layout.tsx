import type { Metadata, Viewport } from "next";
import { headers } from "next/headers";
import type { ReactNode } from "react";
import "./globals.css";
import { ZOD_JITLESS } from "./zod-jitless";

export const metadata: Metadata = {
  title: "Text-to-Image Gateway",
  description: "Generate images on a self-hosted GPU server through this gateway",
};

export const viewport: Viewport = {
  width: "device-width",
  initialScale: 1,
  colorScheme: "light dark",
};

export default async function RootLayout({ children }: { children: ReactNode }) {
  // Reading the request makes every page render per request, never prerendered:
  // Next puts the nonce of the request's CSP (lib/security/node-guard.mjs) on its own scripts while rendering.
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
