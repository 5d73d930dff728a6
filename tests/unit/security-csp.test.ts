import { describe, expect, it } from "vitest";
import { z } from "zod";

describe("zod under the pages' CSP", () => {
  // app/layout.tsx sets `jitless` through this global before any bundle runs, so zod
  // never probes `new Function` (a CSP violation report under script-src without 'unsafe-eval').
  it("keeps its global config at globalThis.__zod_globalConfig, where the page's first script sets jitless", () => {
    const store = (globalThis as { __zod_globalConfig?: object }).__zod_globalConfig;
    expect(store).toBeDefined();
    expect(z.config()).toBe(store);
  });
});
