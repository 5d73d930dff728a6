import { route } from "@/lib/http";
import { readJob, readJobHead } from "@/lib/job-doors";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";

/** GET /api/jobs/{id} */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.job, {
  GET: (request, context) => readJob(new URL(request.url).pathname.split("/")[3] ?? "", context),
  HEAD: (request, context) => readJobHead(new URL(request.url).pathname.split("/")[3] ?? "", context),
});
