import { readFile } from "node:fs/promises";
import path from "node:path";
import { expect, test } from "@playwright/test";
import { GeneratorPage } from "./generator-page";
import { GATEWAY_URL, STEP_MS, emulator } from "./servers";

test.beforeEach(async () => {
  await emulator.reset();
});

test("generating shows the image at the requested size", async ({ page }) => {
  const ui = new GeneratorPage(page);
  await ui.open();
  await ui.screenshot("idle");
  await ui.prompt.fill("A red fox in snow at dawn, soft light");
  await page.getByRole("radio", { name: "Landscape 1216×832" }).check();
  await page.getByLabel("Steps").fill("6");
  // A fixed seed: the same picture every run, so docs/screenshot.png barely changes.
  await page.getByLabel("Random seed").uncheck();
  await page.getByLabel("Seed", { exact: true }).fill("1234");
  await ui.generate.click();

  expect(await ui.waitForResult()).toBe(1234);
  expect(await ui.resultImage.evaluate((img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight])).toEqual([1216, 832]);
  await expect(page.getByText("1216×832", { exact: true })).toBeVisible();
  await expect(ui.history.getByRole("button", { name: /A red fox in snow/ })).toBeVisible();
  await ui.screenshot("result");
  // The README's picture, refreshed on request (UPDATE_DOCS_SCREENSHOT=1) so test runs leave the tree clean.
  if (process.env.UPDATE_DOCS_SCREENSHOT === "1") {
    await page.screenshot({ path: path.resolve(import.meta.dirname, "../../docs/screenshot.png") });
  }
  await page.emulateMedia({ colorScheme: "dark" });
  await ui.screenshot("result-dark");
});

test("the step text advances while the GPU works", async ({ page }) => {
  const ui = new GeneratorPage(page);
  await ui.open();
  await ui.fill({ prompt: "a lighthouse in a storm", steps: 12 });
  const statusTexts = await ui.recordStatusTexts();
  await ui.generate.click();

  await expect(page.getByRole("progressbar", { name: "Generation progress" })).toBeVisible();
  await expect(ui.status).toContainText(/Step \d+ of 12/);
  await ui.screenshot("generating");
  await ui.waitForResult();

  const steps = (await statusTexts())
    .map((text) => /^Step (\d+) of 12$/.exec(text)?.[1])
    .filter((step) => step !== undefined)
    .map(Number);
  expect(steps.slice(0, 2)).toEqual([1, 2]);
  expect(steps.length).toBeGreaterThanOrEqual(3);
  expect(steps).toEqual([...steps].sort((a, b) => a - b)); // never goes back
});

test("a request waiting for the gateway's only slot shows its queue position, then runs", async ({ page }) => {
  const ui = new GeneratorPage(page);
  await ui.open();
  // Another client holds the one slot (MAX_CONCURRENT_REQUESTS=1 in the e2e gateway) for 12 steps.
  const other = fetch(`${GATEWAY_URL}/api/generate`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: "another client", width: 256, height: 256, num_inference_steps: 12 }),
  });
  await expect.poll(async () => (await emulator.stats()).active).toBe(1);
  await ui.fill({ prompt: "a patient queue" });
  await ui.generate.click();

  await expect(ui.status).toHaveText("Queued — position 1");
  await ui.screenshot("queued");
  const response = await other;
  expect(response.status).toBe(200);
  await response.arrayBuffer();
  await expect(ui.status).toContainText(/Step \d+ of 6/);
  await ui.waitForResult();
});

test("Cancel stops the generation and the GPU server sees the abort", async ({ page }) => {
  const ui = new GeneratorPage(page);
  await ui.open();
  await ui.fill({ prompt: "a slow cathedral", steps: 12 });
  await ui.generate.click();
  await expect(ui.status).toContainText(/Step \d+ of 12/);

  await ui.cancel.click();
  await expect(ui.status).toContainText("Cancelled after");
  await expect.poll(async () => (await emulator.stats()).aborted, { timeout: 5_000 }).toBeGreaterThanOrEqual(1);
  // Wait as long as the whole generation would have taken: still no image.
  await page.waitForTimeout(12 * STEP_MS);
  await expect(ui.resultImage).toHaveCount(0);
  expect((await emulator.stats()).completed).toBe(0);
  await expect(ui.generate).toBeEnabled();
});

test("the health badge turns red while the GPU server is down and green when it returns", async ({ page }) => {
  test.setTimeout(45_000);
  const ui = new GeneratorPage(page);
  await ui.open();
  const downAt = Date.now();
  await emulator.outage(12_000);

  await expect(ui.badge).toContainText("Unreachable", { timeout: 10_000 });
  await expect(ui.badge).toHaveAttribute("data-level", "unreachable");
  await expect(ui.generate).toBeDisabled();
  await expect(ui.generate).toHaveText("GPU server unreachable");
  await ui.screenshot("health-red");

  await expect(ui.badge).toContainText("Healthy", { timeout: 20_000 - (Date.now() - downAt) });
  await expect(ui.generate).toBeEnabled();
});

test("an empty prompt shows the validation message and sends nothing", async ({ page }) => {
  const ui = new GeneratorPage(page);
  await ui.open();
  const sent: string[] = [];
  page.on("request", (request) => {
    if (request.url().includes("/generate")) sent.push(request.url());
  });
  await ui.prompt.fill("");
  await page.getByLabel("Steps").fill("20");
  await ui.generate.click();

  await expect(ui.prompt).toHaveAccessibleDescription(/String should have at least 1 character/);
  await expect(ui.prompt).toHaveAttribute("aria-invalid", "true");
  await expect(ui.prompt).toBeFocused();
  await expect(page.getByLabel("Steps")).toHaveAccessibleDescription("Input should be less than or equal to 12");
  await ui.prompt.press("Control+Enter"); // the keyboard path must not send either
  await expect(ui.status).toContainText("Describe an image");
  expect(sent).toEqual([]);
  expect((await emulator.stats()).generateRequests).toBe(0);
});

test("the history is the gateway's job list, images by URL: it survives a reload and restores the settings", async ({ page }) => {
  const ui = new GeneratorPage(page);
  await ui.open();
  await ui.fill({ prompt: "a teapot on the moon", steps: 7 });
  await ui.prompt.press("Control+Enter");
  const seed = await ui.waitForResult();
  const entry = ui.history.getByRole("button", { name: /a teapot on the moon/ });
  await expect(entry).toBeVisible();

  await page.reload();
  await expect(entry).toBeVisible();
  // The thumbnail is decorative (alt=""), so it has no img role; it is the job's image, by URL.
  const thumbnail = entry.locator("img");
  await expect.poll(() => thumbnail.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeGreaterThan(0);
  const [job] = await ui.jobs<{ output: { image_url: string } }>("", 1);
  expect(await thumbnail.getAttribute("src")).toBe(job?.output.image_url);
  await expect(ui.resultImage).toHaveCount(0);
  await ui.prompt.fill("something else");
  await entry.click();

  await expect(ui.prompt).toHaveValue("a teapot on the moon");
  await expect(page.getByLabel("Steps")).toHaveValue("7");
  await expect(page.getByLabel("Seed", { exact: true })).toHaveValue(String(seed));
  await expect(ui.resultImage).toBeVisible();
  // No images kept in the browser: no IndexedDB, and the page's own notes are small.
  expect(await page.evaluate(async () => (await indexedDB.databases()).length)).toBe(0);
  expect(await page.evaluate(() => JSON.stringify(localStorage).length)).toBeLessThan(20_000);
});

test("a reload in the middle of a generation takes its job up again: the progress goes on and the image shows, generated once", async ({ page }) => {
  await emulator.setStepMs(400);
  const ui = new GeneratorPage(page);
  await ui.open();
  await ui.fill({ prompt: "a lantern through a reload", steps: 12 });
  await ui.generate.click();
  await expect(ui.status).toContainText(/Step [2-9] of 12/);

  await page.reload();
  await expect(ui.status).toContainText(/Step \d+ of 12/);
  const step = Number(/Step (\d+)/.exec((await ui.status.textContent()) ?? "")?.[1]);
  expect(step).toBeGreaterThanOrEqual(2);
  await expect(ui.generate).toBeDisabled();
  await ui.waitForResult();
  const stats = await emulator.stats();
  expect(stats.generateRequests).toBe(1);
  expect(stats.aborted).toBe(0);
  await expect(ui.history.getByRole("button", { name: /a lantern through a reload/ })).toBeVisible();
});

test("Cancel after a reload cancels the job by id, and the GPU server sees the abort", async ({ page }) => {
  await emulator.setStepMs(400);
  const ui = new GeneratorPage(page);
  await ui.open();
  await ui.fill({ prompt: "a cancel across a reload", steps: 12 });
  await ui.generate.click();
  await expect(ui.status).toContainText(/Step \d+ of 12/);
  await page.reload();
  await expect(ui.status).toContainText(/Step \d+ of 12/);

  await ui.cancel.click();
  await expect(ui.status).toContainText("Cancelled after");
  await expect.poll(async () => (await emulator.stats()).aborted, { timeout: 2_000 }).toBe(1);
  const [job] = await ui.jobs<{ status: string; input: { prompt: string } }>("", 1);
  expect(job).toMatchObject({ status: "canceled", input: { prompt: "a cancel across a reload" } });
  await page.reload();
  await expect(ui.generate).toBeEnabled();
  await expect(ui.status).toContainText("Describe an image");
});

test("Download JPEG saves the GPU server's JPEG of the requested size, named from the prompt and seed", async ({ page }) => {
  const ui = new GeneratorPage(page);
  await ui.open();
  await ui.fill({ prompt: "Red fox in snow!", width: 320, height: 256 });
  await ui.generate.click();
  const seed = await ui.waitForResult();
  // The browser decoded it: a real JPEG, shown at its size.
  expect(await ui.resultImage.evaluate((image: HTMLImageElement) => [image.naturalWidth, image.naturalHeight])).toEqual([320, 256]);

  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Download JPEG" }).click()]);
  expect(download.suggestedFilename()).toBe(`red-fox-in-snow-${seed}.jpg`);
  const jpeg = await readFile(await download.path());
  expect([jpeg[0], jpeg[1], jpeg.at(-2), jpeg.at(-1)]).toEqual([0xff, 0xd8, 0xff, 0xd9]);
  const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
  expect([jpeg.readUInt16BE(sof + 7), jpeg.readUInt16BE(sof + 5)]).toEqual([320, 256]);
});

test("a 375 px wide screen needs no horizontal scrolling, even with a result", async ({ page }) => {
  await page.setViewportSize({ width: 375, height: 812 });
  const ui = new GeneratorPage(page);
  await ui.open();
  await ui.fill({ prompt: "a very long prompt about a mountain village at night with lanterns and snow", width: 1024, height: 512 });
  await ui.generate.click();
  await ui.waitForResult();
  await expect(ui.history.getByRole("button", { name: /a very long prompt about a mountain village/ }).first()).toBeVisible();

  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);
  await ui.screenshot("narrow-375", { fullPage: true });
});

test("a gateway error is shown in its own words, not as a status code", async ({ page }) => {
  const ui = new GeneratorPage(page);
  await ui.open();
  await emulator.setFault({ kind: "status", status: 500, detail: "CUDA out of memory" });
  await ui.fill({ prompt: "a failing GPU" });
  await ui.generate.click();

  await expect(ui.status).toHaveText("Generation failed: Text-to-image server error: CUDA out of memory");
  await expect(ui.status).not.toContainText("500");
  await expect(ui.resultImage).toHaveCount(0);
  await ui.screenshot("error");
});

test("a GPU server that refuses for now (its 503) is waited for: the page says so, and the image comes once it takes it", async ({ page }) => {
  const ui = new GeneratorPage(page);
  await ui.open();
  await emulator.setFault({ kind: "status", status: 503, detail: "Queue is full" });
  await ui.fill({ prompt: "a busy GPU" });
  await ui.generate.click();

  await expect(ui.status).toContainText("The GPU server is not taking it yet (Queue is full); trying again in");
  await expect(ui.status).not.toContainText("503");
  await emulator.setFault(null);
  await ui.waitForResult();
});

test("an error in the middle of the stream is shown and the form is usable again", async ({ page }) => {
  const ui = new GeneratorPage(page);
  await ui.open();
  await ui.fill({ prompt: "a broken stream [[fault:stream_cut]]" });
  await ui.generate.click();

  await expect(ui.status.locator(".error-message")).toBeVisible({ timeout: 10_000 });
  await expect(ui.status).not.toContainText(/HTTP|undefined|\[object/);
  await expect(ui.resultImage).toHaveCount(0);
  await expect(ui.generate).toBeEnabled();
});

test("Copy seed and Reuse seed hand over the result's seed", async ({ page, context }) => {
  await context.grantPermissions(["clipboard-read", "clipboard-write"]);
  const ui = new GeneratorPage(page);
  await ui.open();
  await ui.fill({ prompt: "a seeded garden" });
  await ui.generate.click();
  const seed = await ui.waitForResult();

  await page.getByRole("button", { name: "Copy seed" }).click();
  await expect(page.getByText("Seed copied.")).toBeVisible();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(String(seed));

  await page.getByRole("button", { name: "Reuse seed" }).click();
  await expect(page.getByLabel("Random seed")).not.toBeChecked();
  await expect(page.getByLabel("Seed", { exact: true })).toHaveValue(String(seed));
});

test("the page works by keyboard alone, and focus stays on a usable, visibly ringed control", async ({ page }) => {
  const ui = new GeneratorPage(page);
  await ui.open();
  await page.keyboard.press("Tab");
  await expect(ui.prompt).toBeFocused();
  await page.keyboard.type("a keyboard-only owl");
  await page.keyboard.press("Tab"); // negative prompt
  await page.keyboard.press("Tab"); // the size radio group: one stop, arrows move within it
  await page.keyboard.press("ArrowDown"); // portrait
  await page.keyboard.press("ArrowDown"); // landscape
  await page.keyboard.press("ArrowDown"); // custom: reveals width and height
  await page.keyboard.press("Tab");
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.type("256");
  await page.keyboard.press("Tab");
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.type("256");
  await page.keyboard.press("Tab");
  await expect(page.getByLabel("Steps")).toBeFocused();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.type("6");
  await page.keyboard.press("Tab"); // guidance; the seed input is disabled while the seed is random
  await page.keyboard.press("Tab");
  await expect(page.getByLabel("Random seed")).toBeFocused();
  await page.keyboard.press("Tab");
  await expect(ui.generate).toBeFocused();
  // The page's own ring (3px solid), not the browser's faint default.
  const ring = await ui.generate.evaluate((button) => [getComputedStyle(button).outlineStyle, getComputedStyle(button).outlineWidth]);
  expect(ring).toEqual(["solid", "3px"]);

  await page.keyboard.press("Enter");
  await expect(ui.cancel).toBeFocused(); // Generate is disabled while running
  await ui.waitForResult();
  await expect(ui.generate).toBeFocused(); // Cancel is gone
  expect(await ui.resultImage.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBe(256);
});

test("a seed of 20 digits keeps every digit, to the GPU server and back; a width off the 16 grid is refused in the form", async ({ page }) => {
  const ui = new GeneratorPage(page);
  await ui.open();
  await ui.fill({ prompt: "a precise seed" });
  await page.getByLabel("Random seed").uncheck();
  await page.getByLabel("Seed", { exact: true }).fill("18446744073709551615");
  await ui.generate.click();
  await ui.waitForResult();
  await expect(ui.resultSeed).toHaveText("18446744073709551615");

  const before = (await emulator.stats()).generateRequests;
  await page.getByLabel("Width (px)").fill("1000");
  await ui.generate.click();
  await expect(page.getByLabel("Width (px)")).toHaveAccessibleDescription("256–2048 px, in multiples of 16. Input should be a multiple of 16");
  expect((await emulator.stats()).generateRequests).toBe(before);
});
