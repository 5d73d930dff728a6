/**
 * The gateway's validation against the genuine server's own answers
 * (tests/fixtures/genuine-validation.json: 172 bodies POSTed to the real
 * FastAPI + pydantic 2 server with a stubbed pipeline). What it accepts, the
 * gateway accepts and forwards digit for digit; what its model refuses, the
 * gateway refuses with the same 422 entries; what only its pipeline refuses
 * (a 500 after the queue), the gateway refuses before the GPU.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { GatewayError } from "@/lib/errors";
import { readJsonObject } from "@/lib/http";
import { requestJson, validateGenerateRequest } from "@/lib/schemas";
import type { ValidationDetail } from "@/lib/schemas";


interface Case {
  body: string;
  status: number;
  detail?: unknown;
  echo?: { seed: string; width: number; height: number; random_seed?: boolean };
}

const fixture = JSON.parse(readFileSync(new URL("../fixtures/genuine-validation.json", import.meta.url), "utf8")) as { cases: Case[] };

type Verdict = { ok: true; json: string } | { ok: false; status: number; detail: unknown };

/** What the gateway does with a body: read as the generate routes read it, then validated. */
async function gateway(body: string): Promise<Verdict> {
  const request = new Request("http://gateway.test/api/generate", { method: "POST", headers: { "content-type": "application/json" }, body });
  try {
    const result = validateGenerateRequest(await readJsonObject(request, { maxBytes: 1 << 20, timeoutMs: 5000 }));
    return result.ok ? { ok: true, json: requestJson(result.data) } : { ok: false, status: 422, detail: result.detail };
  } catch (error) {
    if (error instanceof GatewayError) return { ok: false, status: error.status, detail: error.detail };
    throw error;
  }
}

/** The digits of the seed in the JSON the gateway sends upstream. */
function sentSeed(json: string): string | undefined {
  return /"seed":(-?\d+)/.exec(json)?.[1];
}

/** Whether JavaScript's JSON.parse refuses the text (Python's json takes NaN and Infinity); a BOM goes, as the gateway's decoder drops it. */
function notJavaScriptJson(body: string): boolean {
  try {
    JSON.parse(body.replace(/^\uFEFF/, ""));
    return false;
  } catch {
    return true;
  }
}

/** Deliberate differences, each stricter than the server and never reaching it. */
function deliberate(verdict: Verdict, body: string): string | undefined {
  if (verdict.ok) return undefined;
  if (verdict.status === 400 && notJavaScriptJson(body)) return "NaN or Infinity, which JSON does not have: the gateway's 400";
  const detail = verdict.detail as ValidationDetail[];
  if (detail.length === 1 && detail[0]?.type === "finite_number" && detail[0].loc[1] === "guidance_scale") {
    return "a guidance of inf or nan, which the server would run";
  }
  return undefined;
}

describe("validation against the genuine server's answers", () => {
  const accepted = fixture.cases.filter((c) => c.status === 200);
  const refusedByModel = fixture.cases.filter((c) => c.status === 422 && Array.isArray(c.detail));
  const refusedByPipeline = fixture.cases.filter((c) => c.status >= 500);

  it("has the cases it was made with", () => {
    expect([accepted.length, refusedByModel.length, refusedByPipeline.length]).toEqual([74, 80, 18]);
  });

  it.each(accepted.map((c) => [c.body.slice(0, 120), c] as const))("accepts what it accepts, and sends the same values: %s", async (_, c) => {
    const verdict = await gateway(c.body);
    if (!verdict.ok) {
      expect(deliberate(verdict, c.body), JSON.stringify(verdict.detail)).toBeDefined();
      return;
    }
    const sent = JSON.parse(verdict.json) as { width: number; height: number };
    if (c.echo) {
      expect([sent.width, sent.height]).toEqual([c.echo.width, c.echo.height]);
      if (!c.echo.random_seed) expect(sentSeed(verdict.json)).toBe(c.echo.seed);
      else expect(sentSeed(verdict.json)).toBe("-1");
    }
  });

  it.each(refusedByModel.map((c) => [c.body.slice(0, 120), c] as const))("refuses what its model refuses, with its 422 entries: %s", async (_, c) => {
    const verdict = await gateway(c.body);
    expect(verdict.ok).toBe(false);
    if (verdict.ok) return;
    if (verdict.status === 400) {
      // Not a JSON object, or not JSON: the gateway's 400 (FastAPI says 422 json_invalid or model_attributes_type).
      expect(["json_invalid", "missing", "model_attributes_type"]).toContain((c.detail as ValidationDetail[])[0]?.type);
      return;
    }
    expect(verdict.status).toBe(422);
    // Through JSON both: the server writes 1e19 as 1e+19 and -0.0 as is, the gateway 1e19 as digits and -0 as 0.
    const json = (value: unknown) => JSON.parse(JSON.stringify(value)) as unknown;
    expect(json(verdict.detail)).toEqual(json(c.detail));
  });

  it.each(refusedByPipeline.map((c) => [c.body.slice(0, 120), c] as const))("refuses before the GPU what fails there after the queue: %s", async (_, c) => {
    const verdict = await gateway(c.body);
    expect(verdict.ok, "refused").toBe(false);
    if (!verdict.ok) expect([400, 422]).toContain(verdict.status);
  });
});
