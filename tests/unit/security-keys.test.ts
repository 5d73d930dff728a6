import { describe, expect, it } from "vitest";
import { GatewayError } from "@/lib/errors";
import { ApiKeys, presentedKeys } from "@/lib/security/keys";

const KEY_A = "alpha-key-0123456789";
const KEY_B = "bravo-key-9876543210-longer";

function headers(init: Record<string, string>): Headers {
  return new Headers(init);
}

function failure(run: () => unknown): GatewayError {
  try {
    run();
  } catch (error) {
    if (error instanceof GatewayError) return error;
    throw error;
  }
  throw new Error("expected a GatewayError");
}

describe("API keys", () => {
  it("asks for nothing when no keys are configured", () => {
    const keys = new ApiKeys([]);
    expect(keys.required).toBe(false);
    expect(keys.verify(headers({}))).toBeUndefined();
  });

  it("accepts each configured key as a Bearer token or as X-API-Key, and tells the keys apart", () => {
    const keys = new ApiKeys([KEY_A, KEY_B]);
    const a = keys.verify(headers({ authorization: `Bearer ${KEY_A}` }));
    const b = keys.verify(headers({ authorization: `bearer  ${KEY_B}` }));
    expect(a).toMatch(/^key:[\w-]{12}$/);
    expect(b).not.toBe(a);
    expect(keys.verify(headers({ "x-api-key": KEY_B }))).toBe(b);
    // The id is the key's own, wherever the key stands in the list (a job stays its key's when the list changes).
    expect(new ApiKeys([KEY_B, KEY_A]).verify(headers({ "x-api-key": KEY_A }))).toBe(a);
    expect(a).not.toContain(KEY_A.slice(0, 6));
  });

  it("signs a text only when keys are configured, by a secret the keys make", () => {
    expect(new ApiKeys([]).sign("x")).toBeUndefined();
    const signature = new ApiKeys([KEY_A]).sign("x");
    expect(signature).toMatch(/^[\w-]{43}$/);
    expect(new ApiKeys([KEY_A]).sign("x")).toBe(signature);
    expect(new ApiKeys([KEY_B]).sign("x")).not.toBe(signature);
    expect(new ApiKeys([KEY_A]).sign("y")).not.toBe(signature);
  });

  it("answers 401 with a Bearer challenge when no key is presented", () => {
    const keys = new ApiKeys([KEY_A]);
    const requests: Record<string, string>[] = [{}, { authorization: `Basic ${btoa(`user:${KEY_A}`)}` }, { authorization: "Bearer " }, { "x-api-key": " " }];
    for (const init of requests) {
      const error = failure(() => keys.verify(headers(init)));
      expect(error).toMatchObject({ code: "unauthorized", status: 401 });
      expect(error.detail).toMatch(/API key is required.*Authorization: Bearer <key>.*X-API-Key: <key>/);
      expect(error.headers["WWW-Authenticate"]).toBe('Bearer realm="text2image-gateway"');
    }
  });

  it("answers 401 invalid_token for a wrong key, whatever its length, and never echoes it", () => {
    const keys = new ApiKeys([KEY_A]);
    for (const wrong of ["zq", KEY_A.slice(0, -1), `${KEY_A}x`, KEY_A.toUpperCase(), "y".repeat(10_000)]) {
      const error = failure(() => keys.verify(headers({ authorization: `Bearer ${wrong}` })));
      expect(error).toMatchObject({ code: "unauthorized", status: 401, detail: "The API key is not valid" });
      expect(error.headers["WWW-Authenticate"]).toBe('Bearer realm="text2image-gateway", error="invalid_token"');
      expect(JSON.stringify({ detail: error.detail, headers: error.headers })).not.toContain(wrong);
    }
  });

  it("accepts a request when any presented key is valid", () => {
    const keys = new ApiKeys([KEY_A]);
    expect(keys.verify(headers({ authorization: "Bearer not-the-key", "x-api-key": KEY_A }))).toBe(keys.verify(headers({ "x-api-key": KEY_A })));
  });

  it("reads the keys a request presents from both headers", () => {
    expect(presentedKeys(headers({ authorization: "Bearer t1", "x-api-key": " t2 " }))).toEqual(["t1", "t2"]);
    expect(presentedKeys(headers({ authorization: "Token t1" }))).toEqual([]);
  });
});
