import { readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "@/lib/config";

const KEY = "k".repeat(16);

describe("security configuration", () => {
  it("is off by default: no keys, no rate limit, no trusted proxy, no CORS, no server token", () => {
    expect(parseConfig({})).toMatchObject({
      apiKeys: [],
      rateLimitPerMinute: 0,
      trustedProxyHops: 0,
      corsOrigins: [],
      serverToken: undefined,
    });
  });

  it("reads a comma list of API keys, ignoring spaces and empty entries", () => {
    expect(parseConfig({ GATEWAY_API_KEYS: ` ${KEY}, ,${KEY}2 ` }).apiKeys).toEqual([KEY, `${KEY}2`]);
  });

  it("reads TRUST_PROXY as false, true (every hop) or a hop count", () => {
    expect(parseConfig({ TRUST_PROXY: "false" }).trustedProxyHops).toBe(0);
    expect(parseConfig({ TRUST_PROXY: "TRUE" }).trustedProxyHops).toBe(Infinity);
    expect(parseConfig({ TRUST_PROXY: "2" }).trustedProxyHops).toBe(2);
  });

  it("normalizes CORS origins as browsers send them and keeps * as given", () => {
    expect(parseConfig({ CORS_ORIGINS: "https://App.Example.com/, http://localhost:5173,https://a.example:443, *" }).corsOrigins).toEqual([
      "https://app.example.com",
      "http://localhost:5173",
      "https://a.example",
      "*",
    ]);
  });

  it.each([
    ["RATE_LIMIT_PER_MINUTE", "-1", "must be a whole number of at least 0"],
    ["RATE_LIMIT_PER_MINUTE", "ten", "must be a whole number"],
    ["TRUST_PROXY", "yes", "must be true, false or a number of proxy hops"],
    ["CORS_ORIGINS", "https://app.example.com/path", "must be a comma-separated list of origins"],
    ["CORS_ORIGINS", "app.example.com", "must be a comma-separated list of origins"],
    ["CORS_ORIGINS", "ftp://files.example.com", "must be a comma-separated list of origins"],
  ])("stops on %s=%s, naming the variable and the form it needs", (name, value, form) => {
    expect(() => parseConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => parseConfig({ [name]: value })).toThrow(`${name}=${JSON.stringify(value)}: ${form}`);
  });

  it("stops on a short or spaced API key without printing any key", () => {
    for (const value of [`${KEY},short-secret`, `${KEY},with space in it!!`]) {
      let message = "";
      try {
        parseConfig({ GATEWAY_API_KEYS: value });
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        message = (error as Error).message;
      }
      expect(message).toMatch(/GATEWAY_API_KEYS=\(hidden\): (each key must be at least 16 characters long|keys must be visible ASCII)/);
      expect(message).not.toContain("short-secret");
      expect(message).not.toContain(KEY);
    }
  });

  it("never prints the server token or URL credentials in a configuration error", () => {
    let message = "";
    try {
      parseConfig({ TEXT2IMAGE_SERVER_TOKEN: "tok en-secret", TEXT2IMAGE_SERVER_URL: "ftp://gpuuser:hunter2@gpu:8001" });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain("TEXT2IMAGE_SERVER_TOKEN=(hidden)");
    expect(message).toContain('TEXT2IMAGE_SERVER_URL="ftp://gpu:8001"');
    expect(message).not.toMatch(/secret|hunter2|gpuuser/);
  });

  it("keeps the server token as given (trimmed)", () => {
    expect(parseConfig({ TEXT2IMAGE_SERVER_TOKEN: " s3cr3t-token " }).serverToken).toBe("s3cr3t-token");
  });
});

describe("the security headers on Vercel", () => {
  it("are next.config.mjs's headers() there only (a server of ours sets them at Node's level, lib/security/node-guard.mjs)", async () => {
    type Config = { headers?: () => Promise<{ source: string; headers: { key: string; value: string }[] }[]> };
    const load = async (query: string) => ((await import(/* @vite-ignore */ `../../next.config.mjs?${query}`)) as { default: Config }).default;
    const self = await load("self-hosted");
    expect(self.headers).toBeUndefined();
    process.env.VERCEL = "1";
    try {
      const vercel = await load("vercel");
      expect(await vercel.headers?.()).toEqual([
        {
          source: "/:path*",
          headers: [
            { key: "X-Content-Type-Options", value: "nosniff" },
            { key: "Referrer-Policy", value: "no-referrer" },
            { key: "X-Frame-Options", value: "DENY" },
          ],
        },
      ]);
    } finally {
      delete process.env.VERCEL;
    }
  });

  it("take proxy.vercel.ts as Next's proxy there only: elsewhere the guard does the pages' part, and Next would run a proxy's matcher on every API request", async () => {
    type Config = { pageExtensions?: string[] };
    const load = async (query: string) => ((await import(/* @vite-ignore */ `../../next.config.mjs?${query}`)) as { default: Config }).default;
    // Next's own rule for finding the proxy file (next/dist/build/index.js): proxy.<one of pageExtensions>, whose default is this.
    const isProxyFile = (name: string, { pageExtensions = ["tsx", "ts", "jsx", "js"] }: Config) => new RegExp(`^proxy\\.(?:${pageExtensions.join("|")})$`).test(name);
    const files = readdirSync(path.join(import.meta.dirname, "../.."));
    const selfHosted = await load("self-hosted-proxy");
    expect(files.filter((name) => isProxyFile(name, selfHosted))).toEqual([]);
    process.env.VERCEL = "1";
    try {
      const vercel = await load("vercel-proxy");
      expect(files.filter((name) => isProxyFile(name, vercel))).toEqual(["proxy.vercel.ts"]);
    } finally {
      delete process.env.VERCEL;
    }
  });
});
