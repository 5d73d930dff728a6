/**
 * The emulator's validation (its own code, emulator/validation.ts) against the
 * genuine server's recorded answers (tests/fixtures/genuine-validation.json):
 * every body POSTed to the emulator's /generate gets the genuine server's
 * status, and its 422 entries or its pipeline's failure, so the stand-in the
 * gateway's tests run against is checked by the real thing, not by the gateway.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";

interface Case {
  body: string;
  status: number;
  detail?: unknown;
  /** The answer's text where it was no JSON. */
  text?: string;
  echo?: { seed: string; width: number; height: number; random_seed?: boolean };
}

const fixture = JSON.parse(readFileSync(new URL("../fixtures/genuine-validation.json", import.meta.url), "utf8")) as { cases: Case[] };

let emulator: Emulator;
beforeAll(async () => {
  emulator = await startEmulator({ stepMs: 0, slots: 4 });
});
afterAll(async () => {
  await emulator.close();
});

/** Python's json reads NaN and Infinity, JavaScript's does not: the emulator answers those bodies 422 json_invalid. */
function notJavaScriptJson(body: string): boolean {
  try {
    JSON.parse(body);
    return false;
  } catch {
    return true;
  }
}

async function post(body: string): Promise<{ status: number; text: string }> {
  const response = await fetch(`${emulator.url}/generate`, { method: "POST", headers: { "content-type": "application/json" }, body });
  return { status: response.status, text: await response.text() };
}

const json = (value: unknown) => JSON.parse(JSON.stringify(value)) as unknown;

describe("the emulator's validation against the genuine server's answers", () => {
  it.each(fixture.cases.map((c) => [c.body.slice(0, 100), c] as const))("%s", async (_, c) => {
    const answer = await post(c.body);
    if (c.body.trim() !== "" && notJavaScriptJson(c.body)) {
      expect(answer.status).toBe(422);
      expect((JSON.parse(answer.text) as { detail: { type: string }[] }).detail[0]?.type).toBe("json_invalid");
      return;
    }
    expect(answer.status, answer.text.slice(0, 300)).toBe(c.status);
    if (c.status === 200 && c.echo) {
      const echoed = JSON.parse(answer.text) as { width: number; height: number };
      expect([echoed.width, echoed.height]).toEqual([c.echo.width, c.echo.height]);
      if (!c.echo.random_seed) expect(/"seed": ?(-?\d+)/.exec(answer.text)?.[1]).toBe(c.echo.seed);
    } else if (c.status === 422 && Array.isArray(c.detail)) {
      const detail = (JSON.parse(answer.text) as { detail: unknown[] }).detail;
      const [first] = c.detail as { type: string; loc: unknown[] }[];
      // Python's json words its decode errors and counts their position its own way.
      if (first?.type === "json_invalid") expect(detail).toMatchObject([{ type: "json_invalid", loc: ["body", expect.any(Number) as unknown] }]);
      else expect(json(detail)).toEqual(json(c.detail));
    } else if (c.detail !== undefined && c.detail !== null) {
      expect((JSON.parse(answer.text) as { detail: unknown }).detail).toEqual(c.detail);
    } else {
      expect(answer.text).toBe(c.text);
    }
  });
});
