"use client";

import dynamic from "next/dynamic";
import { useMemo } from "react";
import "@scalar/api-reference-react/style.css";
import type { AnyApiReferenceConfiguration } from "@scalar/api-reference-react";
import type { OpenApiDocument } from "@/lib/openapi";

// Scalar mounts a Vue app into the DOM: it renders in the browser only.
const ApiReference = dynamic(() => import("@scalar/api-reference-react").then((module) => module.ApiReferenceReact), {
  ssr: false,
  loading: () => <p className="api-docs-loading">Loading the API reference…</p>,
});

export function ApiViewer({ openApi }: { openApi: OpenApiDocument }) {
  const configuration = useMemo(
    (): AnyApiReferenceConfiguration => ({
      content: openApi,
      // Everything that would reach beyond the gateway is off: the page must
      // work on a closed network and send nothing to third parties.
      withDefaultFonts: false, // else fonts come from Scalar's CDN
      telemetry: false,
      proxyUrl: "", // "Test Request" calls this gateway directly, never a hosted proxy
      showDeveloperTools: "never",
      mcp: { disabled: true },
      agent: { disabled: true }, // "Ask AI" talks to Scalar's servers
      hideClientButton: true,
      documentDownloadType: "json",
      showOperationId: true,
      defaultOpenAllTags: true,
      orderSchemaPropertiesBy: "preserve",
      orderRequiredPropertiesFirst: false,
    }),
    [openApi],
  );
  return <ApiReference configuration={configuration} />;
}
