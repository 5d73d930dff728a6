import { route } from "@/lib/http";
import { serveImage } from "@/lib/job-doors";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";

/** GET /api/images/{sha256}[.ext]: a job's image, content-addressed. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.image, {
  GET: (request) => serveImage(new URL(request.url).pathname.split("/")[3] ?? "", request),
});
