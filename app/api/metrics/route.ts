import { GatewayError, fail } from "@/lib/errors";
import { route, streamedJson } from "@/lib/http";
import { upstream } from "@/lib/upstream";

export const dynamic = "force-dynamic";

/**
 * GET /api/metrics: the GPU server's own metrics JSON, passed through. With
 * several servers, `{"servers": {"<url>": <its JSON> | {"error": "..."}}}`.
 */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route({
  GET: async () => {
    try {
      return streamedJson(await upstream().metrics());
    } catch (error) {
      throw error instanceof GatewayError ? fail.metricsUnavailable(error) : error;
    }
  },
}, "/api/metrics");
