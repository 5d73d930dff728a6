import { describe, expect, it } from "vitest";
import { MAX_REQUEST_ID_LENGTH, requestIdFrom } from "@/lib/observe/request";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function idFor(value: string | undefined): string {
  const headers = new Headers();
  if (value !== undefined) headers.set("x-request-id", value);
  return requestIdFrom(headers);
}

describe("the request id", () => {
  it.each([
    ["a UUID", "0b6f1c9e-5d4a-4e3b-9a8f-2c1d0e9f8a7b"],
    ["a ULID", "01ARZ3NDEKTSV4RRFFQ69G5FAV"],
    ["a W3C trace id with a span", "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7"],
    ["base64", "dGVzdA+/=="],
    ["a dotted token", "req_42.retry-1"],
    ["exactly 128 characters", "a".repeat(MAX_REQUEST_ID_LENGTH)],
  ])("keeps %s from the caller", (_name, id) => {
    expect(idFor(id)).toBe(id);
  });

  it("drops the blanks around a sane id", () => {
    expect(idFor("  abc-123 ")).toBe("abc-123");
  });

  it.each([
    ["missing", undefined],
    ["empty", ""],
    ["over 128 characters", "a".repeat(MAX_REQUEST_ID_LENGTH + 1)],
    ["with a space", "abc 123"],
    ["with quotes", 'abc"},{"status":200'],
    ["with a control character", "abc\u0001def"],
    ["not ASCII", "zürich"],
    ["two headers joined", "a, b"],
  ])("is a new UUID when the caller's is %s", (_name, value) => {
    const id = idFor(value);
    expect(id).toMatch(UUID);
    expect(idFor(value)).not.toBe(id);
  });
});
