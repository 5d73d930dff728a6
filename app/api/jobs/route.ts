import { route } from "@/lib/http";
import { listJobs, submitJob } from "@/lib/jobs/doors";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";
// `Prefer: wait` holds the answer at most 60 s.
export const maxDuration = 90;

/** POST /api/jobs: a generation as a job; GET /api/jobs: the caller's jobs. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.jobs, { GET: listJobs, POST: submitJob });
