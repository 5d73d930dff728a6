import { randomUUID } from "node:crypto";

export const REQUEST_ID_HEADER = "x-request-id";
export const MAX_REQUEST_ID_LENGTH = 128;

// The characters of UUIDs, ULIDs, trace ids and base64: nothing that could break a log line or a header.
const SANE = /^[A-Za-z0-9._:+/=-]+$/;

/** The caller's `x-request-id` when it is a sane token of at most 128 characters, else a new UUID. */
export function requestIdFrom(headers: Headers): string {
  const given = headers.get(REQUEST_ID_HEADER)?.trim();
  return given && given.length <= MAX_REQUEST_ID_LENGTH && SANE.test(given) ? given : randomUUID();
}
