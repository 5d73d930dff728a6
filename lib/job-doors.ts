/**
 * The jobs API over HTTP: submit, read, list, cancel, follow as server-sent
 * events (resumed with Last-Event-ID), and the images by URL. A job is its
 * owner's: another caller's job is a 404. lib/jobs does the work, and imports
 * none of this.
 */
import "server-only";
import { timingSafeEqual } from "node:crypto";
import { fail } from "./errors";
import { fileResponse } from "./file-response";
import { headersOnly, readJsonObject } from "./http";
import type { RequestContext } from "./http";
import { registry } from "./registry";
import { validateGenerateRequest } from "./schemas";
import { jobOwner, takeRateLimit } from "./security";
import { EventStream, SSE_HEADERS } from "./sse";
import { settlesWithin } from "./shutdown";
import { FINISHED, inputHash } from "./jobs/types";
import type { JobRecord, JobLogEntry, StoredOutput } from "./jobs/types";

const MAX_IDEMPOTENCY_KEY = 255;
const MAX_WAIT_S = 60;

/** The job as its owner reads it; `input` is its JSON as kept (a 20-digit seed keeps its digits). */
async function jobJson(job: JobRecord): Promise<string> {
  const latest = async (type: string) =>
    (await registry().jobs.store.events(job.id, 0)).map((event) => JSON.parse(event.data) as Record<string, unknown>).findLast((event) => event.type === type);
  // The place in line now, as the runner heard it last (its log keeps only the first); else the one kept.
  const place = job.status === "queued" ? ((await registry().jobs.log.placeOf(job.id)) ?? (await latest("queued"))?.queue_position) : undefined;
  const progress = job.status === "running" ? await latest("progress") : undefined;
  const self = `/api/jobs/${job.id}`;
  const body = {
    id: job.id,
    status: job.status,
    created_at: job.created_at,
    started_at: job.started_at,
    completed_at: job.completed_at,
    queue_position: typeof place === "number" ? place : null,
    progress: progress ? { step: progress.step, total_steps: progress.total_steps } : null,
    output: outputOf(job),
    error: job.error,
    urls: { self, cancel: `${self}/cancel`, events: `${self}/events` },
  };
  return `${JSON.stringify(body).slice(0, -1)},"input":${job.input}}`;
}

const EXTENSIONS: Record<string, string> = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp" };

/**
 * A job's output as its owner reads it: with the image's URL, which, with API
 * keys, is signed until the job expires, so a browser's `<img src>` (which
 * sends no key) can fetch it.
 */
export function outputOf(job: JobRecord): (StoredOutput & { image_url: string }) | null {
  if (!job.output) return null;
  const { sha256, content_type: type } = job.output;
  const url = `/api/images/${sha256}.${EXTENSIONS[type] ?? "bin"}`;
  const { access, config } = registry();
  const expires = Math.floor((Date.parse(job.completed_at ?? job.created_at) + config.jobTtlMs) / 1000);
  const signature = access.keys.sign(`${sha256}:${expires}`);
  return { ...job.output, image_url: signature === undefined ? url : `${url}?expires=${expires}&sig=${signature}` };
}

/** Whether the request carries a signature of this image that has not expired. */
function signedFor(request: Request, sha256: string): boolean {
  const params = new URL(request.url).searchParams;
  const expires = Number(params.get("expires"));
  const given = Buffer.from(params.get("sig") ?? "");
  const wanted = Buffer.from(registry().access.keys.sign(`${sha256}:${expires}`) ?? "");
  return expires * 1000 > Date.now() && given.length === wanted.length && timingSafeEqual(given, wanted);
}

const JOB_HEADERS = { "content-type": "application/json", "cache-control": "no-store" };

async function answer(job: JobRecord, status: number, headers: Record<string, string> = {}): Promise<Response> {
  return new Response(await jobJson(job), { status, headers: { ...JOB_HEADERS, ...headers } });
}

/**
 * The caller's job, or the 404 that an unknown one and another key's alike
 * get. Without API keys a job's id, unguessable, is what reaches it (see
 * `jobOwner`: an address identifies no one).
 */
async function ownJob(id: string, context: RequestContext): Promise<JobRecord> {
  const { jobs, access } = registry();
  const job = await jobs.store.get(id);
  if (!job || (access.keys.required && job.owner !== context.caller)) throw fail.noSuchJob(id);
  return job;
}

/** `Prefer: wait=N` (Replicate's form; `wait` alone is 60): how long to hold the answer, in ms. */
function preferredWaitMs(prefer: string | null): number {
  const wait = /(?:^|[,;\s])wait(?:=(\d+))?(?:$|[,;\s])/i.exec(prefer ?? "");
  if (!wait) return 0;
  return Math.min(Number(wait[1] ?? MAX_WAIT_S), MAX_WAIT_S) * 1000;
}

/** Resolves with the job once it has finished, or as it is after `ms` or when the client leaves (its listener and timer go with it). */
async function finishedWithin(job: JobRecord, ms: number, client: AbortSignal): Promise<JobRecord> {
  const { jobs } = registry();
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const unlisten = jobs.log.listen(job.id, (event, now) => {
    if (FINISHED.has(now.status)) done();
  });
  client.addEventListener("abort", done, { once: true });
  void jobs.store.get(job.id).then((now) => {
    if (!now || FINISHED.has(now.status) || client.aborted) done();
  }, done);
  await settlesWithin(finished, ms);
  unlisten();
  client.removeEventListener("abort", done);
  return (await jobs.store.get(job.id)) ?? job;
}

/** POST /api/jobs: the generate request as a job; 202 with its Location, or 200 if it finished within `Prefer: wait`. */
export async function submitJob(request: Request, context: RequestContext): Promise<Response> {
  const gateway = registry();
  const key = request.headers.get("idempotency-key") ?? undefined;
  if (key !== undefined && (key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY)) {
    throw fail.invalidHeader("Idempotency-Key", `must be 1 to ${MAX_IDEMPOTENCY_KEY} characters`);
  }
  const caller = context.caller ?? "anonymous";
  const { owner } = jobOwner(request, caller);
  // One image of the rate limit, taken before the body is read as on every door; a replay makes none, so takes none.
  if (key === undefined || !(await gateway.jobs.store.find(owner, key))) context.headers.push(...(await takeRateLimit(caller)));
  const body = await readJsonObject(request, { maxBytes: gateway.config.maxBodyBytes, timeoutMs: gateway.config.bodyTimeoutMs, signal: request.signal });
  const result = validateGenerateRequest(body, { sizeMultiple: gateway.config.sizeMultiple });
  if (!result.ok) throw fail.validation(result.detail);
  // Answered once the job has its place, so a queued job says where it stands and an admitted one says running.
  const { job, created, input, running } = await gateway.jobs.submit(owner, result.data, key);
  // Serverless, the function lives until the job is done with (within its maxDuration); a server does anyway.
  if (running) context.afterResponse(() => running);
  if (!created && job.input_hash !== inputHash(input)) throw fail.idempotencyMismatch();
  const waitMs = preferredWaitMs(request.headers.get("prefer"));
  const now = waitMs > 0 && !FINISHED.has(job.status) ? await finishedWithin(job, waitMs, request.signal) : ((await gateway.jobs.store.get(job.id)) ?? job);
  const headers: Record<string, string> = { location: `/api/jobs/${job.id}` };
  if (!created) headers["idempotent-replayed"] = "true";
  return answer(now, FINISHED.has(now.status) ? 200 : 202, headers);
}

/** GET /api/jobs/{id} */
export async function readJob(id: string, context: RequestContext): Promise<Response> {
  return answer(await ownJob(id, context), 200);
}

/** HEAD of a job's door: whether the caller has the job, with the door's headers, no events read and no stream started. */
function ownJobHead(headers: Record<string, string>): (id: string, context: RequestContext) => Promise<Response> {
  return async (id, context) => {
    await ownJob(id, context);
    return headersOnly(headers);
  };
}

export const readJobHead = ownJobHead(JOB_HEADERS);
export const followJobHead = ownJobHead(SSE_HEADERS);

/** POST /api/jobs/{id}/cancel: idempotent; a finished job is given back as it is. */
export async function cancelJob(id: string, context: RequestContext): Promise<Response> {
  const job = await ownJob(id, context);
  return answer((await registry().jobs.cancel(id)) ?? job, 200);
}

/** `limit`, a whole number from 1 to 100 (20 when absent); anything else is a 400, not SQLite's refusal. */
function listLimit(raw: string | null): number {
  if (raw === null) return 20;
  const limit = /^\d{1,3}$/.test(raw) ? Number(raw) : NaN;
  if (!(limit >= 1 && limit <= 100)) throw fail.invalidParameter("limit", "must be a whole number from 1 to 100");
  return limit;
}

/** GET /api/jobs?limit=N&before=<id>: the caller's jobs, newest first. */
export async function listJobs(request: Request, context: RequestContext): Promise<Response> {
  const params = new URL(request.url).searchParams;
  const limit = listLimit(params.get("limit"));
  const { owner, listed } = jobOwner(request, context.caller ?? "anonymous");
  const { store } = registry().jobs;
  const jobs = listed ? await store.list(owner, limit + 1, params.get("before") ?? undefined) : [];
  const page = jobs.slice(0, limit);
  const next = jobs.length > limit ? (page.at(-1)?.id ?? null) : null;
  const bodies = await Promise.all(page.map(jobJson));
  return new Response(`{"jobs":[${bodies.join(",")}],"next":${JSON.stringify(next)}}`, { headers: JOB_HEADERS });
}

/** An event's data as sent; `complete` as the job's output, so its image URL is the one the job gives (signed with keys). */
function eventData(event: JobLogEntry, job: JobRecord | undefined): string {
  if (!event.data.startsWith('{"type":"complete"')) return event.data;
  return job ? JSON.stringify({ type: "complete", output: outputOf(job) }) : event.data;
}

/** Last-Event-ID as a number: past every event kept (1e400, Infinity) it is past them all; not a number, the start. */
function lastEventId(header: string | null): number {
  const id = Number(header ?? 0);
  return Number.isNaN(id) || id < 0 ? 0 : id;
}

/**
 * GET /api/jobs/{id}/events: the job's events from its start, or from just
 * after `Last-Event-ID`, written as /api/generate-stream writes its own
 * (lib/sse.ts); the stream ends when the job has ended (at once for a
 * finished one), whatever Last-Event-ID said.
 */
export async function followJob(id: string, request: Request, context: RequestContext): Promise<Response> {
  await ownJob(id, context);
  const { jobs, config } = registry();
  let last = lastEventId(request.headers.get("last-event-id"));
  let unlisten: () => void = () => undefined;
  const stream = new EventStream(config.sseKeepAliveMs, () => {
    unlisten();
  });
  const send = (event: JobLogEntry, job: JobRecord | undefined) => {
    // A later place in line is not kept: it goes out without an id, the client's Last-Event-ID unchanged.
    if (event.live) {
      stream.send(event.data);
      return;
    }
    if (event.seq <= last) return;
    last = event.seq;
    stream.send(eventData(event, job), event.seq);
  };
  const endIfOver = (job: JobRecord | undefined) => {
    if (job && !FINISHED.has(job.status)) return;
    unlisten();
    stream.end();
  };
  // Something at once: Next sends a streamed answer's headers with its first bytes.
  stream.comment(`job ${id}`);
  // Listening before reading what is kept: what comes meanwhile waits for the kept ones, then goes once, in order.
  let heard: [JobLogEntry, JobRecord][] | undefined = [];
  unlisten = jobs.log.listen(id, (event, job) => {
    if (heard) {
      heard.push([event, job]);
      return;
    }
    send(event, job);
    endIfOver(job);
  });
  const [now, kept] = await Promise.all([jobs.store.get(id), jobs.store.events(id, last)]);
  for (const event of kept) send(event, now);
  const meanwhile = heard;
  heard = undefined;
  for (const [event, job] of meanwhile) send(event, job);
  endIfOver(meanwhile.at(-1)?.[1] ?? now);
  return stream.response();
}

const IMAGE_NAME = /^([0-9a-f]{64})(?:\.(?:png|jpg|jpeg|webp|bin))?$/;

/**
 * GET /api/images/{sha256}[.ext]: the bytes, content-addressed, so cached for
 * good; streamed, with Range (lib/file-response.ts). With API keys, an image
 * is its signed URL's, or a key's whose job made it: every other request has
 * the same answer whether the image exists or not (401 without a valid key,
 * else 404), so no hash can be probed.
 */
export async function serveImage(name: string, request: Request): Promise<Response> {
  const { access, jobs } = registry();
  const sha256 = IMAGE_NAME.exec(name)?.[1];
  if (access.keys.required && !(sha256 !== undefined && signedFor(request, sha256))) {
    const caller = access.keys.verify(request.headers) ?? "";
    if (sha256 === undefined || !(await jobs.store.ownsImage(caller, sha256))) throw fail.noSuchImage(name);
  }
  const image = sha256 === undefined ? undefined : await jobs.store.image(sha256);
  if (!image) throw fail.noSuchImage(name);
  const file = {
    bytes: image.bytes,
    contentType: image.content_type,
    etag: `"${image.sha256}"`,
    read: (start: number, end: number) => jobs.store.images.read(image.sha256, start, end),
  };
  return fileResponse(request, file, { "cache-control": "public, max-age=31536000, immutable" });
}
