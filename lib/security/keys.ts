import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { fail } from "../errors";

const BEARER = /^Bearer +(\S+) *$/i;

function digest(key: string): Buffer {
  return createHash("sha256").update(key, "utf8").digest();
}

/** GATEWAY_API_KEYS as SHA-256 digests, each compared in constant time: neither the keys' lengths nor the closest one leaks. */
export class ApiKeys {
  private readonly digests: Buffer[];
  /** The image URLs' signing secret, made of every key: a URL signed under another list of keys is no longer valid. */
  private readonly secret: Buffer;

  constructor(keys: readonly string[]) {
    this.digests = keys.map(digest);
    this.secret = createHash("sha256").update("image-urls").update(Buffer.concat(this.digests)).digest();
  }

  /** Whether requests must present a key (GATEWAY_API_KEYS is set). */
  get required(): boolean {
    return this.digests.length > 0;
  }

  /** The caller's key (`Authorization: Bearer` or `X-API-Key`): a stable id of it for rate limits, undefined without keys; else 401. */
  verify(headers: Headers): string | undefined {
    if (!this.required) return undefined;
    const presented = presentedKeys(headers);
    if (presented.length === 0) throw fail.apiKeyMissing();
    let match = -1;
    for (const key of presented) {
      const given = digest(key);
      this.digests.forEach((stored, index) => {
        // No early exit: the time taken does not depend on which key matched.
        if (timingSafeEqual(given, stored) && match < 0) match = index;
      });
    }
    if (match < 0) throw fail.apiKeyInvalid();
    // From the key itself, not its place in the list: a job stays its key's when the list changes.
    return `key:${(this.digests[match] as Buffer).subarray(0, 9).toString("base64url")}`;
  }

  /**
   * A signature of `text` by a secret only the configured keys make, for URLs a
   * browser fetches without headers (an image in `<img src>`). Undefined without keys.
   */
  sign(text: string): string | undefined {
    if (!this.required) return undefined;
    return createHmac("sha256", this.secret).update(text).digest("base64url");
  }
}

/** The keys a request presents: a Bearer token, an X-API-Key value, or both. */
export function presentedKeys(headers: Headers): string[] {
  const keys: string[] = [];
  const bearer = BEARER.exec(headers.get("authorization") ?? "")?.[1];
  if (bearer) keys.push(bearer);
  const apiKey = headers.get("x-api-key")?.trim();
  if (apiKey) keys.push(apiKey);
  return keys;
}
