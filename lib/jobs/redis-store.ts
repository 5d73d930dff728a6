/**
 * Jobs shared by every gateway on one Redis (JOB_STORE=redis): a job's record
 * is a hash, its events a list (an event's place in it is its SSE id) whose
 * appends are published on the job's channel, its idempotency key a string
 * set once, an owner's jobs a sorted set; images are in a store every gateway
 * reads (S3). Each gateway keeps a heartbeat; the others take up the queued
 * jobs of one whose heartbeat lapsed and fail its running ones
 * (`gateway_lost`: the GPU may have run them, so never again). Each change
 * that must hold whole is one Lua script. What a job writes expires JOB_TTL
 * after it ends.
 */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { GatewayError, fail } from "../errors";
import { REDIS_CONNECTION, connectedWithin } from "../redis-connection";
import { checkWritable } from "./images";
import type { ImageStore } from "./images";
import { jobFromText, newJob } from "./types";
import type { JobRecord, JobChange, JobError, JobLogEntry, JobStatus, JobStore, SharedJobs, StoredImage } from "./types";
import { APPEND, CLAIM, CREATE, DROP_IMAGE, PUT_IMAGE, SET_PLACE, TOUCH_IMAGE, UPDATE } from "./redis-scripts";

export interface RedisJobStoreOptions {
  redisUrl: string;
  images: ImageStore;
  /** A finished job's record, events and idempotency key expire this long after it ended. */
  jobTtlMs: number;
  /** A gateway whose heartbeat is this old is gone: its jobs are taken up. */
  leaseTtlMs: number;
  /** Every gateway of one deployment uses the same prefix (tests use their own). */
  keyPrefix?: string;
}

const DEFAULT_JOBS_PREFIX = "text2image-gateway:jobs:";
/** The longest the first commands of a process wait for its first connection. */
const FIRST_CONNECTION_MS = 2000;
/** An owner's list keeps this many of its newest jobs at most. */
const OWNER_LIST_MAX = 10_000;

export class RedisJobStore implements JobStore {
  readonly shared: SharedJobs;
  readonly images: ImageStore;
  private readonly redis: Redis;
  private readonly subscriber: Redis;
  private readonly prefix: string;
  private readonly instance = randomBytes(9).toString("base64url");
  private readonly heartbeat: NodeJS.Timeout;
  private readonly firstConnection: Promise<void>;
  /** The first heartbeat: no job is this gateway's before it, or another would take it up as a lost one's. */
  private readonly alive: Promise<void>;

  constructor(private readonly options: RedisJobStoreOptions) {
    this.prefix = options.keyPrefix ?? DEFAULT_JOBS_PREFIX;
    this.images = options.images;
    this.redis = new Redis(options.redisUrl, REDIS_CONNECTION);
    this.firstConnection = connectedWithin(this.redis, FIRST_CONNECTION_MS);
    this.subscriber = new Redis(options.redisUrl, { ...REDIS_CONNECTION, enableOfflineQueue: true, autoResubscribe: true });
    // Unreachable, each command fails at once as the error table's 503; the connections come back by themselves.
    this.redis.on("error", () => undefined);
    this.subscriber.on("error", () => undefined);
    void this.subscriber.subscribe(this.key("cancel")).catch(() => undefined);
    this.heartbeat = setInterval(() => {
      void this.beat();
    }, options.leaseTtlMs / 3).unref();
    this.alive = this.beat();
    // Back after an outage: the heartbeat at once, before another gateway takes this one for lost.
    this.redis.on("ready", () => {
      void this.beat();
    });
    const { redis } = this;
    this.shared = {
      get reachable() {
        return redis.status === "ready";
      },
      watch: (id) => void this.subscriber.subscribe(this.channel(id)).catch(() => undefined),
      unwatch: (id) => void this.subscriber.unsubscribe(this.channel(id)).catch(() => undefined),
      onEvent: (handler) => {
        const events = this.key("events:");
        this.subscriber.on("message", (channel: string, message: string) => {
          if (!channel.startsWith(events)) return;
          const colon = message.indexOf(":");
          const seq = Number(message.slice(0, colon));
          const data = message.slice(colon + 1);
          handler(channel.slice(events.length), seq === 0 ? { seq, data, live: true } : { seq, data });
        });
      },
      tell: (id, data) => this.run(() => this.redis.publish(this.channel(id), `0:${data}`)).then(() => undefined),
      setPlace: (id, position) => this.run(() => this.redis.eval(SET_PLACE, 1, this.key(`job:${id}`), position)).then(() => undefined),
      placeOf: (id) => this.run(() => this.redis.hget(this.key(`job:${id}`), "place")).then((place) => (place === null ? undefined : Number(place))),
      announceCancel: (id) => this.run(() => this.redis.publish(this.key("cancel"), id)).then(() => undefined),
      onCancel: (handler) => {
        this.subscriber.on("message", (channel: string, id: string) => {
          if (channel === this.key("cancel")) handler(id);
        });
      },
      recoverEveryMs: Math.max(250, options.leaseTtlMs / 2),
    };
  }

  private key(name: string): string {
    return `${this.prefix}${name}`;
  }

  private channel(id: string): string {
    return this.key(`events:${id}`);
  }

  /** A command against Redis, its failure the error table's 503 (the Redis is unreachable), never a half-written job. */
  private async run<T>(command: () => Promise<T>): Promise<T> {
    await this.firstConnection;
    try {
      return await command();
    } catch (error) {
      throw error instanceof GatewayError ? error : fail.jobStoreUnavailable(error);
    }
  }

  private async beat(): Promise<void> {
    await this.firstConnection;
    await this.redis.set(this.key(`instance:${this.instance}`), "1", "PX", this.options.leaseTtlMs).catch(() => undefined);
  }

  async create(owner: string, input: string, idempotencyKey?: string): Promise<{ job: JobRecord; created: boolean }> {
    await this.alive;
    return this.run(async () => {
      const { id, created_at, input_hash } = newJob(owner, input, idempotencyKey);
      const idem = idempotencyKey === undefined ? "" : this.key(`idem:${owner}:${idempotencyKey}`);
      const keys = [this.key(`job:${id}`), idem, this.key(`owner:${owner}`), this.key("active"), this.key("seq")];
      const args = [id, owner, created_at, input, input_hash, idempotencyKey ?? "", this.instance, OWNER_LIST_MAX];
      const [jobId, created] = (await this.redis.eval(CREATE, keys.length, ...keys, ...args)) as [string, number];
      const job = await this.get(jobId);
      if (!job) throw fail.jobStoreUnavailable(new Error(`job ${jobId} is gone as it was made`));
      return { job, created: created === 1 };
    });
  }

  async get(id: string): Promise<JobRecord | undefined> {
    return this.run(async () => fromRecord(await this.redis.hgetall(this.key(`job:${id}`))));
  }

  async find(owner: string, idempotencyKey: string): Promise<JobRecord | undefined> {
    return this.run(async () => {
      const id = await this.redis.get(this.key(`idem:${owner}:${idempotencyKey}`));
      return id === null ? undefined : this.get(id);
    });
  }

  async list(owner: string, limit: number, before?: string): Promise<JobRecord[]> {
    return this.run(async () => {
      const listKey = this.key(`owner:${owner}`);
      const score = before === undefined ? null : await this.redis.zscore(listKey, before);
      if (before !== undefined && score === null) return [];
      const ids = await this.redis.zrevrangebyscore(listKey, score === null ? "+inf" : `(${score}`, "-inf", "LIMIT", 0, limit * 2);
      const pipeline = this.redis.pipeline();
      for (const id of ids) pipeline.hgetall(this.key(`job:${id}`));
      const records = ((await pipeline.exec()) ?? []).map(([, record]) => fromRecord(record as Record<string, string>));
      // Expired ones leave the list as they are found.
      const gone = ids.filter((_, i) => records[i] === undefined);
      if (gone.length > 0) await this.redis.zrem(listKey, ...gone);
      return records.filter((job): job is JobRecord => job !== undefined).slice(0, limit);
    });
  }

  async remove(id: string): Promise<void> {
    await this.run(async () => {
      const job = await this.get(id);
      await this.redis.del(this.key(`job:${id}`), this.key(`events:${id}`));
      await this.redis.zrem(this.key("active"), id);
      if (job) await this.redis.zrem(this.key(`owner:${job.owner}`), id);
      if (job?.idempotency_key) await this.redis.del(this.key(`idem:${job.owner}:${job.idempotency_key}`));
    });
  }

  async update(id: string, change: JobChange): Promise<boolean> {
    return this.run(async () => {
      const [owner, key] = await this.redis.hmget(this.key(`job:${id}`), "owner", "idempotency_key");
      const entries = Object.entries(change) as [string, string | object | null][];
      const fields = entries.flatMap(([name, value]) => [name, value === null ? "" : typeof value === "object" ? JSON.stringify(value) : value]);
      if (change.output) fields.push("image", change.output.sha256);
      const idem = key ? this.key(`idem:${owner ?? ""}:${key}`) : "";
      const keys = [this.key(`job:${id}`), this.key(`events:${id}`), this.key("active"), this.key("image-owners:")];
      return (await this.redis.eval(UPDATE, keys.length, ...keys, this.options.jobTtlMs, idem, change.output?.sha256 ?? "", ...fields)) === 1;
    });
  }

  async append(id: string, data: string, limit?: number): Promise<JobLogEntry | undefined> {
    return this.run(async () => {
      const seq = (await this.redis.eval(APPEND, 1, this.key(`events:${id}`), data, limit ?? -1, this.channel(id))) as number;
      return seq === 0 ? undefined : { seq, data };
    });
  }

  async events(id: string, afterSeq: number): Promise<JobLogEntry[]> {
    return this.run(async () => {
      if (!Number.isFinite(afterSeq)) return [];
      const kept = await this.redis.lrange(this.key(`events:${id}`), Math.max(0, Math.floor(afterSeq)), -1);
      return kept.map((data, i) => ({ seq: Math.floor(afterSeq) + i + 1, data }));
    });
  }

  async putImage(bytes: Buffer, contentType: string, sha256: string): Promise<StoredImage> {
    // Kept already (the same image again): not sent to the bucket again, where a read of it may be under way.
    const kept = await this.run(() => this.redis.eval(TOUCH_IMAGE, 2, this.key(`image:${sha256}`), this.key("images"), Date.now(), sha256));
    if (kept !== 1) {
      await this.images.put(sha256, bytes, contentType);
      const keys = [this.key(`image:${sha256}`), this.key("images"), this.key("images-bytes")];
      await this.run(() => this.redis.eval(PUT_IMAGE, keys.length, ...keys, sha256, contentType, bytes.length, Date.now()));
    }
    return { sha256, content_type: contentType, bytes: bytes.length };
  }

  async image(sha256: string): Promise<StoredImage | undefined> {
    return this.run(async () => {
      const record = await this.redis.hgetall(this.key(`image:${sha256}`));
      return record.sha256 ? { sha256, content_type: record.content_type ?? "application/octet-stream", bytes: Number(record.bytes) } : undefined;
    });
  }

  async ownsImage(owner: string, sha256: string): Promise<boolean> {
    return this.run(async () => (await this.redis.sismember(this.key(`image-owners:${sha256}`), owner)) === 1);
  }

  /** Takes up the jobs of gateways whose heartbeat lapsed, or that let go of them at shutdown (JobStore.recover). */
  async recover(now: Date): Promise<{ requeued: JobRecord[]; failed: JobRecord[] }> {
    return this.run(async () => {
      const error: JobError = { kind: "gateway_lost", detail: "The gateway running this generation stopped answering; it is not run again" };
      const requeued: JobRecord[] = [];
      const failed: JobRecord[] = [];
      const ids = await this.redis.zrange(this.key("active"), 0, -1);
      // Asked all at once (ioredis sends each without waiting for the one before): one round trip, not one per job.
      const runners = await Promise.all(ids.map((id) => this.redis.hget(this.key(`job:${id}`), "runner")));
      for (const [index, id] of ids.entries()) {
        const runner = runners[index] ?? null;
        if (runner === null || runner === this.instance) continue;
        // 1: a queued job, this gateway's now; 2: a running one, which fails (unless it ended meanwhile); 0: neither.
        const claim = (await this.redis.eval(CLAIM, 2, this.key(`job:${id}`), this.key(`instance:${runner}`), runner, this.instance)) as number;
        if (claim === 2 && !(await this.update(id, { status: "failed", completed_at: now.toISOString(), error }))) continue;
        const job = claim === 0 ? undefined : await this.get(id);
        if (job) (claim === 1 ? requeued : failed).push(job);
      }
      return { requeued, failed };
    });
  }

  /** Images stored before `before` go (the jobs themselves expire by their keys' TTL). */
  async expire(before: Date, batch: number): Promise<number> {
    return this.run(async () => {
      const old = await this.redis.zrangebyscore(this.key("images"), "-inf", before.getTime(), "LIMIT", 0, batch);
      for (const sha256 of old) await this.dropImage(sha256);
      return old.length;
    });
  }

  async trim(maxBytes: number, batch: number): Promise<number> {
    return this.run(async () => {
      let removed = 0;
      while (removed < batch && Number((await this.redis.get(this.key("images-bytes"))) ?? 0) > maxBytes) {
        const [oldest] = await this.redis.zrange(this.key("images"), 0, 0);
        if (oldest === undefined) break;
        await this.dropImage(oldest);
        removed++;
      }
      return removed;
    });
  }

  private async dropImage(sha256: string): Promise<void> {
    const dropped = await this.redis.eval(DROP_IMAGE, 4, this.key(`image:${sha256}`), this.key("images"), this.key("images-bytes"), this.key(`image-owners:${sha256}`), sha256);
    if (dropped === 1) await this.images.remove(sha256).catch(() => undefined);
  }

  /** Finished jobs expire by their TTL: nothing to thin. */
  async thin(): Promise<number> {
    return Promise.resolve(0);
  }

  async usage(): Promise<{ images: number; bytes: number }> {
    return this.run(async () => {
      const [images, bytes] = await Promise.all([this.redis.zcard(this.key("images")), this.redis.get(this.key("images-bytes"))]);
      return { images, bytes: Number(bytes ?? 0) };
    });
  }

  /** Jobs still to end (the finished ones expire by their TTL, uncounted). */
  async size(): Promise<number> {
    return this.run(() => this.redis.zcard(this.key("active")));
  }

  /** The queued and running jobs of every gateway; finished ones are not counted here. */
  async counts(): Promise<Record<JobStatus, number>> {
    return this.run(async () => {
      const counts: Record<JobStatus, number> = { queued: 0, running: 0, succeeded: 0, failed: 0, canceled: 0 };
      const ids = await this.redis.zrange(this.key("active"), 0, -1);
      const pipeline = this.redis.pipeline();
      for (const id of ids) pipeline.hget(this.key(`job:${id}`), "status");
      for (const [, status] of (await pipeline.exec()) ?? []) {
        if (typeof status === "string" && status in counts) counts[status as JobStatus]++;
      }
      return counts;
    });
  }

  async checkWritable(): Promise<void> {
    await this.run(() => this.redis.ping());
    await checkWritable(this.images);
  }

  /** Lets go: this gateway's queued jobs are left for the others at once, its heartbeat stops. */
  close(): void {
    clearInterval(this.heartbeat);
    void this.release().finally(() => {
      this.redis.disconnect();
      this.subscriber.disconnect();
    });
    this.images.close?.();
  }

  private async release(): Promise<void> {
    try {
      const ids = await this.redis.zrange(this.key("active"), 0, -1);
      for (const id of ids) {
        const [runner, status] = await this.redis.hmget(this.key(`job:${id}`), "runner", "status");
        if (runner === this.instance && status === "queued") await this.redis.hset(this.key(`job:${id}`), "runner", "");
      }
      await this.redis.del(this.key(`instance:${this.instance}`));
    } catch {
      // Unreachable: the heartbeat's lapse lets the others take them up.
    }
  }
}

/** A job's hash, none when it has expired (or never was). */
function fromRecord(record: Record<string, string>): JobRecord | undefined {
  return record.id ? jobFromText(record) : undefined;
}

