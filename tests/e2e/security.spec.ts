/**
 * Hardening in Chromium: the page under its Content-Security-Policy, the API
 * key prompt, and CORS for an "original frontend" served from another origin.
 * The CORS and key cases use a second gateway (GATEWAY_API_KEYS, CORS_ORIGINS)
 * started here, beside the one playwright.config.ts starts, on the same emulator.
 */
import { createServer } from "node:http";
import type { Server } from "node:http";
import { expect, test } from "@playwright/test";
import type { Page } from "@playwright/test";
import { GeneratorPage } from "./generator-page";
import { KEYED_PORT, LISTED_PORT, UNLISTED_PORT, emulator, startGateway } from "./servers";
import type { StartedGateway } from "./servers";

const KEYED_URL = `http://127.0.0.1:${KEYED_PORT}`;
const API_KEY = "e2e-key-5f0c2a9d8e7b6a41";

let keyedGateway: StartedGateway | undefined;
let frontends: Server[] = [];

/** The "original frontend": a page on another origin that calls the gateway as the original gateway's frontend did. */
const FRONTEND_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>original frontend</title></head>
<body><pre id="out">running</pre>
<script>
  const gateway = ${JSON.stringify(KEYED_URL)};
  async function attempt(name, run) {
    try {
      const response = await run();
      const body = await response.json();
      return { name, ok: true, status: response.status, requestId: response.headers.get("x-request-id"), body };
    } catch (error) {
      return { name, ok: false, error: String(error) };
    }
  }
  (async () => {
    const results = [
      await attempt("health", () => fetch(gateway + "/health")),
      await attempt("generate", () => fetch(gateway + "/generate", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer ${API_KEY}" },
        body: JSON.stringify({ prompt: "from the original frontend", width: 256, height: 256, num_inference_steps: 6 }),
      })),
    ];
    window.results = results;
    document.getElementById("out").textContent = "done";
  })();
</script></body></html>`;

function serveFrontend(port: number): Promise<Server> {
  const server = createServer((_request, response) => {
    response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    response.end(FRONTEND_HTML);
  });
  return new Promise((resolve) => {
    server.listen(port, "127.0.0.1", () => {
      resolve(server);
    });
  });
}

test.beforeAll(async () => {
  test.setTimeout(90_000);
  frontends = await Promise.all([serveFrontend(LISTED_PORT), serveFrontend(UNLISTED_PORT)]);
  keyedGateway = await startGateway(KEYED_PORT, { GATEWAY_API_KEYS: API_KEY, CORS_ORIGINS: `http://127.0.0.1:${LISTED_PORT}` });
});

test.afterAll(async () => {
  await Promise.all(frontends.map((server) => new Promise((resolve) => server.close(resolve))));
  await keyedGateway?.stop();
});

test.beforeEach(async () => {
  await emulator.reset();
});

/** Collects the page's CSP violations (as the browser reports them to the document) and console errors. */
async function watchViolations(page: Page): Promise<() => Promise<string[]>> {
  const consoleErrors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error" && /Content Security Policy|Refused to/i.test(message.text())) consoleErrors.push(message.text());
  });
  await page.addInitScript(() => {
    const seen: string[] = [];
    Object.assign(window, { cspViolations: seen });
    document.addEventListener("securitypolicyviolation", (event) => {
      seen.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
    });
  });
  return async () => [...consoleErrors, ...(await page.evaluate(() => (window as unknown as { cspViolations: string[] }).cspViolations))];
}

test("the page generates under its nonce-based CSP with no violation", async ({ page }) => {
  const violations = await watchViolations(page);
  const ui = new GeneratorPage(page);
  await ui.open();
  const policy = (await page.request.get("/")).headers()["content-security-policy"];
  expect(policy).toMatch(/script-src 'self' 'nonce-[^']+' 'strict-dynamic'/);

  await ui.fill({ prompt: "a walled garden" });
  await ui.generate.click();
  await ui.waitForResult();
  // Its thumbnail: the gateway's image by URL.
  const thumbnail = ui.history.getByRole("button", { name: /a walled garden/ }).first().locator("img");
  await expect.poll(() => thumbnail.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeGreaterThan(0);
  expect(await violations()).toEqual([]);
});

test("an inline script injected into the page's HTML without the nonce does not run", async ({ page }) => {
  const violations = await watchViolations(page);
  // What an HTML injection would do: the gateway's own answer (and its CSP header), plus a script.
  await page.route("/", async (route) => {
    const response = await route.fetch();
    const html = (await response.text()).replace("<body>", "<body><script>window.injected = true;</script>");
    await route.fulfill({ response, body: html });
  });
  const ui = new GeneratorPage(page);
  await ui.open(); // the page itself still works
  expect(await page.evaluate(() => (window as unknown as { injected?: boolean }).injected)).toBeUndefined();
  // Reported by the browser, as the policy's only violation on the page.
  const reported = await violations();
  expect(reported).toContainEqual(expect.stringMatching(/^script-src(-elem)? blocked inline$/));
  expect(reported.every((text) => /inline/.test(text))).toBe(true);
});

test("the API reference at /docs renders under its CSP with no violation", async ({ page }) => {
  const violations = await watchViolations(page);
  await page.goto("/docs");
  await expect(page.getByText("Generate an image").first()).toBeVisible({ timeout: 15_000 });
  await page.waitForTimeout(500); // late-mounted parts of the viewer
  expect(await violations()).toEqual([]);
});

test("a gateway with API keys asks for one, explains a 401 in words, and works once it has the key", async ({ page }) => {
  const violations = await watchViolations(page);
  const sentAuthorization: (string | undefined)[] = [];
  page.on("request", (request) => {
    if (request.method() === "POST" && request.url().endsWith("/api/jobs")) sentAuthorization.push(request.headers().authorization);
  });
  const ui = new GeneratorPage(page);
  await page.goto(`${KEYED_URL}/`);
  await expect(ui.badge).toContainText("Healthy");
  const key = page.getByLabel("API key");
  await expect(key).toBeVisible();
  await expect(key).toHaveAttribute("type", "password");

  await ui.fill({ prompt: "a locked door" });
  await ui.generate.click();
  await expect(ui.status).toHaveText("Generation failed: An API key is required: send it as Authorization: Bearer <key> or X-API-Key: <key>");
  await expect(ui.status).not.toContainText("401");
  await expect(key).toBeFocused();
  await expect(key).toHaveAttribute("aria-invalid", "true");

  await key.fill("not-the-right-key-at-all");
  await ui.generate.click();
  await expect(ui.status).toHaveText("Generation failed: The API key is not valid");
  expect((await emulator.stats()).generateRequests).toBe(0);

  await key.fill(API_KEY);
  await ui.generate.click();
  await ui.waitForResult();
  await expect(key).not.toHaveAttribute("aria-invalid");
  expect(sentAuthorization).toEqual([undefined, "Bearer not-the-right-key-at-all", `Bearer ${API_KEY}`]);

  // Kept for this tab (sessionStorage), never in localStorage.
  await page.reload();
  await expect(page.getByLabel("API key")).toHaveValue(API_KEY);
  expect(await page.evaluate(() => JSON.stringify(localStorage))).not.toContain(API_KEY);
  expect(await violations()).toEqual([]);
});

test("the page of the gateway without keys shows no key field", async ({ page }) => {
  const ui = new GeneratorPage(page);
  await ui.open();
  await expect(page.getByLabel("API key")).toHaveCount(0);
});

test("a frontend on a listed origin calls /health and /generate across origins", async ({ page }) => {
  await page.goto(`http://127.0.0.1:${LISTED_PORT}/`);
  await expect(page.locator("#out")).toHaveText("done", { timeout: 15_000 });
  const results = await page.evaluate(() => (window as unknown as { results: unknown }).results);
  expect(results).toEqual([
    expect.objectContaining({ name: "health", ok: true, status: 200, body: expect.objectContaining({ gateway: "running" }) }),
    expect.objectContaining({
      name: "generate",
      ok: true,
      status: 200,
      requestId: expect.any(String), // an exposed header
      body: expect.objectContaining({ image_base64: expect.stringMatching(/^data:image\/jpeg;base64,/) }),
    }),
  ]);
  expect((await emulator.stats()).generateRequests).toBe(1);
});

test("a frontend on an unlisted origin is blocked by the browser, and its generation never runs", async ({ page }) => {
  await page.goto(`http://127.0.0.1:${UNLISTED_PORT}/`);
  await expect(page.locator("#out")).toHaveText("done", { timeout: 15_000 });
  const results = await page.evaluate(() => (window as unknown as { results: unknown }).results);
  expect(results).toEqual([
    { name: "health", ok: false, error: expect.stringContaining("Failed to fetch") as unknown },
    { name: "generate", ok: false, error: expect.stringContaining("Failed to fetch") as unknown },
  ]);
  // The preflight failed, so the POST was never sent.
  expect((await emulator.stats()).generateRequests).toBe(0);
});
