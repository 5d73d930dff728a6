import { route } from "@/lib/http";
import { followJob, followJobHead } from "@/lib/job-doors";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";
// A job's stream lasts as long as its generation.
export const maxDuration = 300;

/** GET /api/jobs/{id}/events: server-sent events, resumable with Last-Event-ID. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.jobEvents, {
  GET: (request, context) => followJob(new URL(request.url).pathname.split("/")[3] ?? "", request, context),
  HEAD: (request, context) => followJobHead(new URL(request.url).pathname.split("/")[3] ?? "", context),
});
