import { route } from "@/lib/http";
import { cancelJob } from "@/lib/job-doors";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";

/** POST /api/jobs/{id}/cancel */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.jobCancel, {
  POST: (request, context) => cancelJob(new URL(request.url).pathname.split("/")[3] ?? "", context),
});
