import path from "node:path";
import { expect, test } from "@playwright/test";
import type { Locator, Page } from "@playwright/test";

/** The built-in page, in the words a user would use. */
export class GeneratorPage {
  readonly prompt: Locator;
  readonly generate: Locator;
  readonly cancel: Locator;
  readonly status: Locator;
  readonly badge: Locator;
  readonly resultImage: Locator;
  readonly resultSeed: Locator;
  readonly history: Locator;

  constructor(readonly page: Page) {
    this.prompt = page.getByLabel("Prompt", { exact: true });
    this.generate = page.getByTestId("generate");
    this.cancel = page.getByRole("button", { name: "Cancel" });
    this.status = page.getByTestId("status");
    this.badge = page.getByTestId("health-badge");
    this.resultImage = page.getByRole("img", { name: /^Generated from the prompt/ });
    this.resultSeed = page.getByTestId("result-seed");
    this.history = page.getByRole("region", { name: "History" });
  }

  /** The page's jobs as the gateway lists them to it: by the client token it keeps (without API keys, the list is by token). */
  async jobs<T>(base = "", limit = 20): Promise<T[]> {
    const token = await this.page.evaluate(() => localStorage.getItem("text2image-gateway.client-token"));
    const response = await this.page.request.get(`${base}/api/jobs?limit=${limit}`, { headers: token ? { "x-client-token": token } : {} });
    return ((await response.json()) as { jobs: T[] }).jobs;
  }

  /** Opens the page and waits until the GPU server is reported healthy. */
  async open(): Promise<void> {
    await this.page.goto("/");
    await expect(this.badge).toContainText("Healthy");
    await expect(this.generate).toHaveText("Generate");
  }

  /** Fills the form; sizes are custom and small so the e2e run stays quick. */
  async fill({ prompt, width = 256, height = 256, steps = 6 }: { prompt: string; width?: number; height?: number; steps?: number }) {
    await this.prompt.fill(prompt);
    await this.page.getByRole("radio", { name: "Custom" }).check();
    await this.page.getByLabel("Width (px)").fill(String(width));
    await this.page.getByLabel("Height (px)").fill(String(height));
    await this.page.getByLabel("Steps").fill(String(steps));
  }

  /** Waits for the finished image and returns its seed. */
  async waitForResult(): Promise<number> {
    await expect(this.status).toContainText("Done in", { timeout: 15_000 });
    await expect(this.resultImage).toBeVisible();
    await expect.poll(() => this.resultImage.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0)).toBe(true);
    return Number(await this.resultSeed.textContent());
  }

  /** Saves a named screenshot of a state under test-results/e2e/screenshots/. */
  async screenshot(name: string, options: { fullPage?: boolean } = {}): Promise<void> {
    const file = path.join(test.info().project.outputDir, "screenshots", `${name}.png`);
    await this.page.screenshot({ path: file, ...options });
  }

  /** Records every text the status region shows, so quick steps are not missed between polls. */
  async recordStatusTexts(): Promise<() => Promise<string[]>> {
    await this.status.evaluate((region) => {
      const seen: string[] = [];
      Object.assign(window, { statusTexts: seen });
      new MutationObserver(() => {
        const text = region.textContent;
        if (seen.at(-1) !== text) seen.push(text);
      }).observe(region, { subtree: true, childList: true, characterData: true });
    });
    return () => this.page.evaluate(() => (window as unknown as { statusTexts: string[] }).statusTexts);
  }
}
