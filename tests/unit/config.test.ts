import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "@/lib/config";

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
});
