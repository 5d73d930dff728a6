/**
 * route() and its access rules in-process: a real registry from its own
 * configuration, Next's after() replaced by a list the test runs, no `next
 * start`. What only the built server shows (Next's routing, its rewrites)
 * stays in tests/integration.
 */
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "@/lib/config";
import { route } from "@/lib/http";
import { Registry, setRegistry } from "@/lib/registry";
import { ROUTES } from "@/lib/routes";

const KEY = "route-test-key-0123456789";
let gateway: Registry | undefined;

afterEach(async () => {
  await gateway?.close(1000);
});

function request(method: string, headers: Record<string, string> = {}): Request {
  return new Request("http://gateway/api/generate", { method, headers, ...(method === "POST" ? { body: "{}" } : {}) });
}

describe("route(), in-process", () => {
  it("keeps a generation route behind its key and its rate limit, answers other methods 405, and runs what a handler left for after the response once", async () => {
    gateway = new Registry(parseConfig({ TEXT2IMAGE_SERVER_URL: "http://127.0.0.1:9", GATEWAY_API_KEYS: KEY, RATE_LIMIT_PER_MINUTE: "2", LOG_LEVEL: "silent" }));
    setRegistry(gateway);
    const scheduled: (() => Promise<unknown>)[] = [];
    const leftForAfter: string[] = [];
    const handlers = route(
      ROUTES.generate,
      {
        POST: (_, context) => {
          context.afterResponse(() => leftForAfter.push(context.caller ?? "?"));
          return Response.json({ caller: context.caller });
        },
      },
      (task) => scheduled.push(task),
    );

    const missing = await handlers.POST(request("POST"));
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toBe('Bearer realm="text2image-gateway"');
    const wrong = await handlers.POST(request("POST", { authorization: "Bearer not-the-key" }));
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ detail: "The API key is not valid" });
    expect(scheduled, "a refused request leaves nothing to run").toEqual([]);

    const keyed = { authorization: `Bearer ${KEY}` };
    const first = await handlers.POST(request("POST", keyed));
    expect(first.status).toBe(200);
    expect(((await first.json()) as { caller: string }).caller).toMatch(/^key:/);
    expect(first.headers.get("ratelimit-remaining")).toBe("1");
    expect((await handlers.POST(request("POST", keyed))).status).toBe(200);
    const limited = await handlers.POST(request("POST", keyed));
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);

    expect(leftForAfter, "nothing runs before the response is closed").toEqual([]);
    await Promise.all(scheduled.map((task) => task()));
    expect(leftForAfter).toHaveLength(2);

    const get = await handlers.GET(request("GET"));
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
    const options = await handlers.OPTIONS(request("OPTIONS"));
    expect(options.status).toBe(204);
    expect(options.headers.get("allow")).toBe("POST, OPTIONS");
  });
});
