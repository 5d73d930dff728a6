import type { Metadata } from "next";
import { buildOpenApiDocument } from "@/lib/openapi";
import { ApiViewer } from "./viewer";
import "./docs.css";

export const metadata: Metadata = {
  title: "API reference · Text-to-Image Gateway",
  description: "Every endpoint of the gateway, its request rules, answers and errors",
};

/** /docs: the gateway's OpenAPI document (also at /api/openapi.json) in an interactive viewer. */
export default function DocsPage() {
  return (
    <main className="api-docs">
      <ApiViewer openApi={buildOpenApiDocument()} />
    </main>
  );
}
