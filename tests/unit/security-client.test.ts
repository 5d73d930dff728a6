import { describe, expect, it } from "vitest";
import { clientAddress, normalizeAddress } from "@/lib/security/client";

const stamp = { header: "x-gateway-peer-test" };

function address(init: Record<string, string>, trustedHops: number, withStamp = true): string {
  return clientAddress(new Headers(init), withStamp ? stamp : undefined, trustedHops);
}

describe("the client's address", () => {
  it("is the socket's peer when no proxy is trusted, whatever X-Forwarded-For claims", () => {
    expect(address({ [stamp.header]: "203.0.113.7", "x-forwarded-for": "198.51.100.1" }, 0)).toBe("203.0.113.7");
  });

  it("is the left-most X-Forwarded-For address when every proxy is trusted (TRUST_PROXY=true)", () => {
    expect(address({ [stamp.header]: "10.0.0.2", "x-forwarded-for": "198.51.100.1, 10.0.0.1" }, Infinity)).toBe("198.51.100.1");
  });

  it("counts trusted hops from the right (TRUST_PROXY=<n>), so a client's own X-Forwarded-For entries are skipped", () => {
    const headers = { [stamp.header]: "10.0.0.2", "x-forwarded-for": "6.6.6.6, 198.51.100.1" };
    expect(address(headers, 1)).toBe("198.51.100.1");
    expect(address(headers, 2)).toBe("6.6.6.6");
    expect(address(headers, 9)).toBe("6.6.6.6");
  });

  it("without a stamping server (Vercel's functions), is the X-Forwarded-For the platform sets", () => {
    expect(address({ "x-forwarded-for": "127.0.0.1" }, 0, false)).toBe("127.0.0.1");
    expect(address({}, 0, false)).toBe("unknown");
  });

  it("puts every request the stamp missed (queued by Next before start-up ended) under one key, whatever X-Forwarded-For claims", () => {
    const unstamped = address({ "x-forwarded-for": "198.51.100.1" }, 0);
    expect(address({ "x-forwarded-for": "198.51.100.2" }, 0)).toBe(unstamped);
    expect(address({}, 0)).toBe(unstamped);
    expect(unstamped).not.toMatch(/198\.51/);
    // Behind trusted proxies, their X-Forwarded-For is what counts, stamped or not.
    expect(address({ "x-forwarded-for": "198.51.100.1, 10.0.0.1" }, 2)).toBe("198.51.100.1");
  });
});

describe("normalizeAddress", () => {
  it.each([
    ["::ffff:127.0.0.1", "127.0.0.1"],
    ["203.0.113.7:51234", "203.0.113.7"],
    ["[2001:db8::1]:443", "2001:db8:0:0::/64"],
    ["2001:db8:aa:bb:1:2:3:4", "2001:db8:aa:bb::/64"],
    ["2001:DB8:aa:bb::9", "2001:db8:aa:bb::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    ["64:ff9b::192.0.2.33", "64:ff9b:0:0::/64"],
  ])("%s → %s", (raw, key) => {
    expect(normalizeAddress(raw)).toBe(key);
  });

  it("puts every address of one IPv6 /64 in one bucket", () => {
    expect(normalizeAddress("2001:db8:1:2::a")).toBe(normalizeAddress("2001:db8:1:2:ffff:ffff:ffff:ffff"));
  });
});
