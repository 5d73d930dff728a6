import { describe, expect, it } from "vitest";
import { CORS_ALLOWED_HEADERS, CorsPolicy, isForeignBrowserRequest } from "@/lib/security/cors";

const APP = "https://app.example.com";
/** A browser's preflight from `origin`. */
const preflight = (origin: string) => new Headers({ origin, "access-control-request-method": "POST" });

describe("CorsPolicy", () => {
  it("sends nothing at all when no origin is listed (same origin only)", () => {
    const policy = new CorsPolicy([]);
    expect(policy.enabled).toBe(false);
    expect(policy.responseHeaders(APP)).toEqual([]);
    expect(policy.preflightHeaders(preflight(APP), ["POST", "OPTIONS"])).toEqual([]);
  });

  it("echoes a listed origin with credentials, exposes the gateway's headers and varies by Origin", () => {
    const headers = Object.fromEntries(new CorsPolicy([APP]).responseHeaders(APP));
    expect(headers).toEqual({
      Vary: "Origin",
      "Access-Control-Allow-Origin": APP,
      "Access-Control-Allow-Credentials": "true",
      "Access-Control-Expose-Headers": expect.stringContaining("x-request-id, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset") as unknown,
    });
  });

  it("gives an unlisted origin no CORS header, only Vary", () => {
    const policy = new CorsPolicy([APP]);
    expect(policy.responseHeaders("https://evil.example")).toEqual([["Vary", "Origin"]]);
    expect(policy.responseHeaders(null)).toEqual([["Vary", "Origin"]]);
    expect(policy.preflightHeaders(preflight("https://evil.example"), ["POST"])).toEqual([]);
  });

  it("answers * only when given, and then never with credentials", () => {
    const headers = Object.fromEntries(new CorsPolicy(["*"]).responseHeaders("https://any.example"));
    expect(headers["Access-Control-Allow-Origin"]).toBe("*");
    expect(headers).not.toHaveProperty("Access-Control-Allow-Credentials");
    // A listed origin beside * still gets its credentials.
    const listed = Object.fromEntries(new CorsPolicy(["*", APP]).responseHeaders(APP));
    expect(listed).toMatchObject({ "Access-Control-Allow-Origin": APP, "Access-Control-Allow-Credentials": "true" });
  });

  it("answers a preflight from an allowed origin with the route's methods, the request headers it takes and a cache time", () => {
    const policy = new CorsPolicy([APP]);
    const headers = Object.fromEntries(policy.preflightHeaders(preflight(APP), ["POST", "OPTIONS"]));
    expect(headers).toEqual({
      "Access-Control-Allow-Methods": "POST, OPTIONS",
      "Access-Control-Allow-Headers": CORS_ALLOWED_HEADERS.join(", "),
      "Access-Control-Max-Age": "600",
    });
    expect(CORS_ALLOWED_HEADERS).toEqual(expect.arrayContaining(["content-type", "authorization", "x-api-key", "x-request-id"]));
    // An OPTIONS without Access-Control-Request-Method is no preflight.
    expect(policy.preflightHeaders(new Headers({ origin: APP }), ["POST", "OPTIONS"])).toEqual([]);
  });
});

describe("isForeignBrowserRequest", () => {
  const policy = new CorsPolicy([APP]);
  const request = (init: Record<string, string>) => isForeignBrowserRequest(new Headers(init), policy);

  it("flags a browser's cross-site request from an unlisted origin", () => {
    expect(request({ "sec-fetch-site": "cross-site", origin: "https://evil.example" })).toBe(true);
    expect(request({ "sec-fetch-site": "same-site", origin: "https://other.example.com" })).toBe(true);
  });

  it("without Fetch Metadata (older browsers), flags an Origin that is neither the gateway's own nor listed", () => {
    expect(request({ origin: "https://evil.example", host: "gateway.example.com" })).toBe(true);
    expect(request({ origin: "null", host: "gateway.example.com" })).toBe(true);
    expect(request({ origin: "https://gateway.example.com", host: "gateway.example.com" })).toBe(false);
    expect(request({ origin: "https://gateway.example.com", host: "10.0.0.5:3000", "x-forwarded-host": "gateway.example.com" })).toBe(false);
    expect(request({ origin: APP, host: "gateway.example.com" })).toBe(false);
  });

  it("lets through same-origin pages, listed origins and non-browser clients", () => {
    expect(request({ "sec-fetch-site": "same-origin", origin: "https://gateway.example.com" })).toBe(false);
    expect(request({ "sec-fetch-site": "cross-site", origin: APP })).toBe(false);
    expect(request({ "sec-fetch-site": "none" })).toBe(false);
    expect(request({})).toBe(false);
  });
});
