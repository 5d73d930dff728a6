/**
 * The page's history against gateways of their own: one that forgets jobs
 * after 3 s (JOB_TTL), so an entry is seen to expire; one with jobs off
 * (JOBS=false, as on Vercel), where the page generates over the stream.
 */
import { expect, test } from "@playwright/test";
import { GeneratorPage } from "./generator-page";
import { NO_JOBS_PORT, SHORT_TTL_PORT, emulator, startGateway } from "./servers";
import type { StartedGateway } from "./servers";

let shortTtl: StartedGateway | undefined;
let noJobs: StartedGateway | undefined;

test.beforeAll(async () => {
  test.setTimeout(90_000);
  [shortTtl, noJobs] = await Promise.all([startGateway(SHORT_TTL_PORT, { JOB_TTL: "3" }), startGateway(NO_JOBS_PORT, { JOBS: "false" })]);
});

test.afterAll(async () => {
  await Promise.all([shortTtl?.stop(), noJobs?.stop()]);
});

test.beforeEach(async () => {
  await emulator.reset();
});

test("an entry whose job the gateway no longer keeps says its image expired, and still restores its settings", async ({ page }) => {
  const gateway = shortTtl as StartedGateway;
  const ui = new GeneratorPage(page);
  await page.goto(gateway.url);
  await expect(ui.generate).toHaveText("Generate");
  await ui.fill({ prompt: "a sandcastle at high tide", steps: 7 });
  await ui.generate.click();
  await ui.waitForResult();
  const entry = ui.history.getByRole("button", { name: /a sandcastle at high tide/ });
  await expect.poll(() => entry.locator("img").evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeGreaterThan(0);

  // JOB_TTL passes: the job, and its image, leave the gateway.
  await expect.poll(async () => (await ui.jobs(gateway.url)).length, { timeout: 10_000 }).toBe(0);
  await page.reload();
  await expect(entry).toContainText("Image expired");
  await expect(entry).toHaveAccessibleName(/image expired/);
  await expect(entry.locator("img")).toHaveCount(0);

  await ui.prompt.fill("something else");
  await entry.click();
  await expect(ui.prompt).toHaveValue("a sandcastle at high tide");
  await expect(page.getByLabel("Steps")).toHaveValue("7");
  await expect(ui.resultImage).toHaveCount(0);
});

test("with jobs off, the page generates over the stream and says it keeps no history", async ({ page }) => {
  const gateway = noJobs as StartedGateway;
  const posted: string[] = [];
  page.on("request", (request) => {
    if (request.method() === "POST") posted.push(new URL(request.url()).pathname);
  });
  const ui = new GeneratorPage(page);
  await page.goto(gateway.url);
  await expect(ui.generate).toHaveText("Generate");
  await expect(ui.history).toContainText("This gateway keeps no history");
  await ui.fill({ prompt: "a stream without jobs" });
  await ui.generate.click();
  await ui.waitForResult();
  expect(await ui.resultImage.getAttribute("src")).toMatch(/^data:image\/jpeg;base64,/);
  expect(posted).toEqual(["/api/generate-stream"]);
});
