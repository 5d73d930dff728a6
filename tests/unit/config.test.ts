import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, FUNCTION_SLACK_S, GENERATE_MAX_DURATION_S, parseConfig } from "@/lib/config";

describe("configuration", () => {
  it("uses the documented defaults", () => {
    const config = parseConfig({});
    expect(config.serverUrl.href).toBe("http://localhost:8001/");
    expect(config).toMatchObject({
      requestTimeoutMs: 300_000,
      maxConcurrent: 10,
      maxQueue: 100,
      queueTimeoutMs: 300_000,
      maxBodyBytes: 65_536,
      maxResponseBytes: 67_108_864,
    });
  });

  it("treats empty strings as unset and lets QUEUE_TIMEOUT follow REQUEST_TIMEOUT", () => {
    const config = parseConfig({ REQUEST_TIMEOUT: "0.5", QUEUE_TIMEOUT: " ", MAX_QUEUE: "" });
    expect(config).toMatchObject({ requestTimeoutMs: 500, queueTimeoutMs: 500, maxQueue: 100 });
    expect(parseConfig({ REQUEST_TIMEOUT: "10", QUEUE_TIMEOUT: "2" }).queueTimeoutMs).toBe(2000);
  });

  it("allows a queue of zero (reject whenever every slot is busy)", () => {
    expect(parseConfig({ MAX_QUEUE: "0" }).maxQueue).toBe(0);
  });

  it.each([
    ["MAX_CONCURRENT_REQUESTS", "abc", "must be a whole number"],
    ["MAX_CONCURRENT_REQUESTS", "0", "must be a whole number of at least 1"],
    ["MAX_QUEUE", "2.5", "must be a whole number"],
    ["REQUEST_TIMEOUT", "-3", "greater than 0"],
    ["QUEUE_TIMEOUT", "soon", "must be a number of seconds"],
    ["TEXT2IMAGE_SERVER_URL", "localhost:8001", "must be an http:// or https:// URL"],
    ["TEXT2IMAGE_SERVER_URL", "ftp://gpu", "must be an http:// or https:// URL"],
    ["MAX_BODY_BYTES", "64k", "must be a whole number"],
  ])("stops on %s=%s, naming the variable and the form it needs", (name, value, form) => {
    expect(() => parseConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => parseConfig({ [name]: value })).toThrow(new RegExp(`${name}="${value.replace(".", "\\.")}": .*${form}`));
  });

  it.each([
    ["TEXT2IMAGE_SERVER_URL", "http://gpu-a:8001,http://bob:s3cr@t-pw@gpu-b:99999", ["s3cr", "t-pw", "bob"]],
    ["TEXT2IMAGE_SERVER_URL", "http://bob:pa/ss#w@rd@gpu-b:99999", ["pa/ss", "w@rd", "bob"]],
    ["TEXT2IMAGE_SERVER_URL", "http://u:p@gpu-a:8001, http://u:p@gpu-a:8001/", ["u:p"]],
    ["REDIS_URL", "http://:r3dis-pw@cache:6379", ["r3dis-pw"]],
  ])("never prints a credential of %s in a start-up error: %s", (name, value, secrets) => {
    let message = "";
    try {
      parseConfig({ [name]: value });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain(name);
    for (const secret of secrets) expect(message).not.toContain(secret);
  });

  describe("on Vercel, where a function ends at maxDuration", () => {
    it("fits the queue wait and the generation inside the generate routes' maxDuration, and says so", () => {
      const settings = parseConfig({ VERCEL: "1" });
      expect(settings.queueTimeoutMs + settings.requestTimeoutMs).toBeLessThanOrEqual((GENERATE_MAX_DURATION_S - FUNCTION_SLACK_S) * 1000);
      expect(settings.queueTimeoutMs).toBeGreaterThan(0);
      expect(settings.warnings.join("\n")).toMatch(/QUEUE_TIMEOUT \+ REQUEST_TIMEOUT \(600 s\) .*maxDuration \(300 s\)/);
    });

    it("keeps what fits, and changes nothing off Vercel", () => {
      expect(parseConfig({ VERCEL: "1", REQUEST_TIMEOUT: "200", QUEUE_TIMEOUT: "60" })).toMatchObject({ requestTimeoutMs: 200_000, queueTimeoutMs: 60_000, warnings: [] });
      expect(parseConfig({})).toMatchObject({ requestTimeoutMs: 300_000, queueTimeoutMs: 300_000, warnings: [] });
    });

    it("turns jobs off, which need a lasting disk, unless JOBS says otherwise", () => {
      expect(parseConfig({}).jobs).toBe(true);
      expect(parseConfig({ VERCEL: "1" }).jobs).toBe(false);
      expect(parseConfig({ VERCEL: "1", JOBS: "true" }).jobs).toBe(true);
      expect(parseConfig({ JOBS: "false" }).jobs).toBe(false);
      expect(() => parseConfig({ JOBS: "maybe" })).toThrow(/JOBS="maybe": must be true or false/);
    });

    it("turns jobs on where they are shared: REDIS_URL and a bucket", () => {
      const shared = { VERCEL: "1", REDIS_URL: "redis://cache:6379", IMAGE_STORE: "s3", S3_BUCKET: "images" };
      expect(parseConfig(shared)).toMatchObject({ jobs: true, jobStore: "redis" });
      expect(parseConfig({ VERCEL: "1", REDIS_URL: "redis://cache:6379" })).toMatchObject({ jobs: false, jobStore: "sqlite" });
    });

    it.each(["api/generate", "api/generate-stream", "v1/images/generations", "api/jobs"])("the %s route declares that maxDuration", (name) => {
      const source = readFileSync(path.join(import.meta.dirname, `../../app/${name}/route.ts`), "utf8");
      expect(/export const maxDuration = (\d+);/.exec(source)?.[1]).toBe(String(GENERATE_MAX_DURATION_S));
    });
  });

  describe("where jobs live", () => {
    const redis = { REDIS_URL: "redis://cache:6379" };
    const bucket = { IMAGE_STORE: "s3", S3_BUCKET: "images" };

    it("keeps them in SQLite by default, in Redis with REDIS_URL and a bucket, as JOB_STORE says otherwise", () => {
      expect(parseConfig({}).jobStore).toBe("sqlite");
      expect(parseConfig({ ...redis, ...bucket }).jobStore).toBe("redis");
      expect(parseConfig({ ...redis, ...bucket, JOB_STORE: "sqlite" }).jobStore).toBe("sqlite");
      expect(parseConfig({ ...redis, JOB_STORE: "redis", SHARED_DATA_DIR: "true" }).jobStore).toBe("redis");
    });

    it("says that REDIS_URL alone leaves jobs per instance, and how to share them", () => {
      const settings = parseConfig(redis);
      expect(settings.jobStore).toBe("sqlite");
      expect(settings.jobsNote).toMatch(/per instance.*IMAGE_STORE=s3/);
      expect(settings.warnings).toContain(settings.jobsNote);
      expect(parseConfig({}).jobsNote).toBeUndefined();
      expect(parseConfig({ ...redis, JOBS: "false" }).jobsNote).toBeUndefined();
    });

    it("refuses a store another gateway could not read, or an unknown one, naming the variable", () => {
      expect(() => parseConfig({ JOB_STORE: "redis" })).toThrow(/JOB_STORE.*redis needs REDIS_URL/);
      expect(() => parseConfig({ ...redis, JOB_STORE: "redis" })).toThrow(/JOB_STORE.*SHARED_DATA_DIR=true/);
      expect(() => parseConfig({ JOB_STORE: "postgres" })).toThrow(/JOB_STORE="postgres": must be sqlite or redis/);
      expect(() => parseConfig({ IMAGE_STORE: "s3" })).toThrow(/S3_BUCKET.*required with IMAGE_STORE=s3/);
    });
  });
});
