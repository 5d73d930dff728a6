/** The job doors (a generation that outlives its connection) and the images they keep, with their OpenAPI operations. */
import { z } from "zod";
import { Job, JobEvent, JobList } from "../api-shapes";
import { fail } from "../errors";
import { BINARY, commonErrors, errorResponse, eventStream, json, jobsOffError } from "./entry";
import type { Response, RouteEntry } from "./entry";
import { generateErrors, generateRequestBody } from "./generation";

const JOBS_ALLOW = ["GET", "HEAD", "POST"];
const JOB_ID = z.object({ id: z.string().meta({ description: "The job's id" }) });

function notFoundError(): Record<number, Response> {
  return { 404: errorResponse(404, "No such job or image, or not the caller's.", { notFound: ["Unknown id", fail.noSuchJob("k3JcUnknown")] }), ...jobsOffError() };
}

export const JOB_ROUTES = {
  jobs: {
    path: "/api/jobs",
    access: "key",
    operations: () => ({
      post: {
        operationId: "submitJob",
        summary: "Generate an image as a job",
        description:
          "Validated and admitted as `POST /api/generate`, but the generation lives as long as its job, not a connection: follow it at `urls.events`, read it at `urls.self`, fetch its image at `output.image_url`. `Idempotency-Key` (≤ 255 characters) gives back the same job for the same body (`Idempotent-Replayed: true`), a 422 for another; `Prefer: wait=N` (0–60 s) holds the answer until the job ends or N s pass.",
        tags: ["generation"],
        requestBody: generateRequestBody(202),
        responses: {
          200: json("The job, finished within `Prefer: wait`", Job),
          202: json("The job, not finished yet: running, or queued with its `queue_position`; `Location` is its URL", Job),
          ...generateErrors(JOBS_ALLOW, {
            storageFull: ["DATA_DIR's disk found full (health says storage_full)", fail.storageFull("the disk of DATA_DIR is full")],
            storeFull: ["MAX_JOBS kept, none finished", fail.jobStoreFull(100_000)],
          }),
          ...jobsOffError(),
        },
      },
      get: {
        operationId: "listJobs",
        summary: "The caller's jobs",
        description: "Newest first, `limit` (1–100, default 20) at a time; `before=<id>` gives the next page. With API keys, only the key's jobs.",
        tags: ["generation"],
        requestParams: {
          query: z.object({
            limit: z.int().min(1).max(100).default(20).meta({ description: "Jobs per page" }),
            before: z.string().optional().meta({ description: "The `next` of the previous page" }),
          }),
        },
        responses: {
          200: json("A page of jobs", JobList),
          400: errorResponse(400, "`limit` is not a whole number from 1 to 100.", { badLimit: ["limit=1.5", fail.invalidParameter("limit", "must be a whole number from 1 to 100")] }),
          ...jobsOffError(),
          ...commonErrors("get", JOBS_ALLOW),
        },
      },
    }),
  },
  job: {
    path: "/api/jobs/[id]",
    access: "key",
    operations: () => ({
      get: {
        operationId: "getJob",
        summary: "A job",
        description: "Unknown, expired and another caller's jobs alike are a 404.",
        tags: ["generation"],
        requestParams: { path: JOB_ID },
        responses: { 200: json("The job", Job), ...notFoundError(), ...commonErrors("get") },
      },
    }),
  },
  jobCancel: {
    path: "/api/jobs/[id]/cancel",
    access: "key",
    operations: () => ({
      post: {
        operationId: "cancelJob",
        summary: "Cancel a job",
        description: "Idempotent: a queued job leaves the queue and never reaches the GPU; a running one has its upstream call aborted; a finished one is returned unchanged.",
        tags: ["generation"],
        requestParams: { path: JOB_ID },
        responses: { 200: json("The job, canceled unless it had finished", Job), ...notFoundError(), ...commonErrors("post") },
      },
    }),
  },
  jobEvents: {
    path: "/api/jobs/[id]/events",
    access: "key",
    operations: () => ({
      get: {
        operationId: "followJob",
        summary: "A job's events, as server-sent events",
        description:
          "Each event has an `id:` line and one `data:` line: `queued`, `progress`, then a terminal `complete` (the output, image by URL), `error` or `canceled`, after which the stream ends. Without `Last-Event-ID`, from the job's first event; with it, from just after that one.",
        tags: ["generation"],
        requestParams: { path: JOB_ID, header: z.object({ "Last-Event-ID": z.int().optional().meta({ description: "The id of the last event received" }) }) },
        responses: {
          200: { description: "A text/event-stream", content: { "text/event-stream": eventStream(JobEvent) } },
          ...notFoundError(),
          ...commonErrors("get"),
        },
      },
    }),
  },
  image: {
    path: "/api/images/[name]",
    operations: () => ({
      get: {
        operationId: "getImage",
        summary: "A job's image",
        description:
          "The bytes with their own type, streamed from the store with `Content-Length`, `ETag` (the hash), `Cache-Control: public, max-age=31536000, immutable` and `Accept-Ranges: bytes`; 304 on `If-None-Match`, one `Range` a 206 (416 past the end), `If-Range` honoured. With GATEWAY_API_KEYS: the signed URL of the job's output, or a key that has a job with this image; any other request gets 401 (no valid key) or 404, whether the image exists or not.",
        tags: ["generation"],
        requestParams: {
          path: z.object({ name: z.string().meta({ description: "The image's SHA-256, an extension (.jpg, .png) optional" }) }),
          query: z.object({
            expires: z.int().optional().meta({ description: "With API keys: the signed URL's expiry (Unix seconds)" }),
            sig: z.string().optional().meta({ description: "With API keys: the signed URL's signature" }),
          }),
          header: z.object({ Range: z.string().optional().meta({ description: "One range of bytes: `bytes=a-b`, `bytes=a-` or `bytes=-n` (several parts: the whole image)" }) }),
        },
        responses: {
          200: { description: "The image", content: { "image/jpeg": BINARY, "image/png": BINARY, "image/webp": BINARY } },
          206: { description: "The part of the image a `Range` asked for, its place in `Content-Range`", content: { "image/jpeg": BINARY, "image/png": BINARY, "image/webp": BINARY } },
          304: { description: "Not modified (If-None-Match)" },
          416: { description: "The `Range` starts past the image's end; `Content-Range: bytes */<size>`" },
          ...notFoundError(),
          ...commonErrors("get"),
        },
      },
    }),
  },
} as const satisfies Record<string, RouteEntry>;
