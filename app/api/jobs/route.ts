import { route } from "@/lib/http";
import { listJobs, submitJob } from "@/lib/job-doors";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";
// The job runs on after the answer, inside this function (Vercel's waitUntil): a generation may take minutes.
export const maxDuration = 300;

/** POST /api/jobs: a generation as a job; GET /api/jobs: the caller's jobs. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.jobs, { GET: listJobs, POST: submitJob });
