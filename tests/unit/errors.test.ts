import { describe, expect, it, vi } from "vitest";
import { ERRORS, fail, traitsOf } from "@/lib/errors";
import { errorAnswer } from "@/lib/http";

async function answer(error: unknown) {
  const response = errorAnswer(error, "request-1");
  return { status: response.status, body: (await response.json()) as unknown, headers: response.headers };
}

describe("the error table", () => {
  it("gives every failure its code's status and traits, one table read by the metrics, the logs, OpenAI's shape, the balancer and the jobs", () => {
    expect(fail.queueFull().status).toBe(ERRORS.queue_full.status);
    expect(fail.clientClosed().status).toBe(499);
    expect(fail.upstreamStatus(500, "boom").status, "the GPU server's own status passes through").toBe(500);
    expect(fail.upstreamStatus(404, "Not Found").status, "a path it does not serve is a bad gateway").toBe(502);
    expect(traitsOf(new Error("unknown"))).toBe(ERRORS.internal);
    const codes = (traits: (keyof (typeof ERRORS)["internal"])[]) => Object.entries(ERRORS).flatMap(([code, kind]) => (traits.some((trait) => kind[trait]) ? [code] : []));
    expect(codes(["rejection"])).toEqual(["queue_full", "queue_timeout", "rate_limited"]);
    expect(codes(["rateLimited"])).toEqual(["queue_full", "queue_timeout", "rate_limited"]);
    expect(codes(["alarm"])).toEqual(["upstream_credentials", "internal"]);
    expect(codes(["ejects"])).toEqual(["upstream_unavailable", "upstream_timeout", "upstream_transport", "upstream_credentials"]);
    expect(codes(["neutral"])).toEqual(["client_closed", "internal"]);
    expect(codes(["upstream"]).every((code) => code.startsWith("upstream_"))).toBe(true);
  });

  it("keeps an upstream 503's own detail", async () => {
    expect(await answer(fail.upstreamStatus(503, "Queue is full"))).toMatchObject({ status: 503, body: { detail: "Queue is full" } });
  });

  it("keeps an upstream 504 as 504", async () => {
    expect(await answer(fail.upstreamStatus(504, "Generation timed out"))).toMatchObject({
      status: 504,
      body: { detail: "Generation timed out" },
    });
  });

  it("passes any other upstream status with a prefixed detail", async () => {
    expect(await answer(fail.upstreamStatus(500, "CUDA out of memory"))).toMatchObject({
      status: 500,
      body: { detail: "Text-to-image server error: CUDA out of memory" },
    });
    const limited = await answer(fail.upstreamStatus(429, "slow down", "7"));
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("7");
  });

  it("never passes a non-error upstream status on as if it were one", async () => {
    expect((await answer(fail.upstreamStatus(302, ""))).status).toBe(502);
  });

  it.each([
    [fail.upstreamTimeout(300_000, null), 504, "Text-to-image server did not answer within 300 s (REQUEST_TIMEOUT)"],
    [fail.upstreamRefused("http://gpu:8001", null), 503, "Text-to-image server http://gpu:8001 is unreachable: connection refused"],
    [fail.upstreamUnresolvable("http://gpu:8001", null), 503, "Text-to-image server http://gpu:8001 is unreachable: host name not found"],
    [fail.upstreamConnection(null), 502, "Connection to the text-to-image server was lost"],
    [fail.upstreamBadResponse("no image_base64 in the answer"), 502, "Text-to-image server sent an invalid response: no image_base64 in the answer"],
    [fail.queueFull(), 503, "Gateway queue is full"],
    [fail.queueTimeout(1500), 503, "No generation slot became free within 1.5 s (QUEUE_TIMEOUT)"],
    [fail.payloadTooLarge(65536), 413, "Request body is larger than 65536 bytes (MAX_BODY_BYTES)"],
  ])("maps %s to %i with its detail", async (error, status, detail) => {
    expect(await answer(error)).toMatchObject({ status, body: { detail } });
  });

  it("sends Retry-After with queue rejections", async () => {
    expect((await answer(fail.queueFull())).headers.get("retry-after")).toMatch(/^\d+$/);
  });

  it("answers an unknown error with a plain 500 and no internals, and leaves the logging to the request's record", async () => {
    const log = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const error = new Error("secret stack at /srv/app.js:12");
    const result = await answer(error);
    // Logged once, at error with its cause, by the request's record (tests/unit/observe-record.test.ts).
    expect(log).not.toHaveBeenCalled();
    log.mockRestore();
    expect(result).toMatchObject({ status: 500, body: { detail: "Internal gateway error" } });
    expect(JSON.stringify(result.body)).not.toContain("secret");
  });
});
