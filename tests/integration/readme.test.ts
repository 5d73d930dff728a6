/**
 * The README's Jobs examples, run as written: its bash block, taken from the
 * README itself, with curl against the built gateway and the emulator as
 * `npm run demo` starts them (the emulator's default pace); only the address
 * differs, the harness's free port for :3000.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect } from "vitest";
import { startEmulator } from "../../emulator/server";
import type { Emulator } from "../../emulator/server";
import { curlPath } from "../programs";
import { it } from "./fixtures";
import { directImage } from "./harness";
import type { Gateway } from "./harness";

const README = readFileSync(path.join(import.meta.dirname, "../../README.md"), "utf8");

/** The first ```bash block after a README heading. */
function bashBlockUnder(heading: string): string {
  const section = README.slice(README.indexOf(`\n${heading}\n`));
  const block = /```bash\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error(`README has no bash block under ${heading}`);
  return block;
}

interface JobBody {
  id: string;
  status: string;
  input: { prompt: string; width: number; height: number; num_inference_steps: number };
  output: { image_url: string; sha256: string; seed: string } | null;
}

let emulator: Emulator;
let gateway: Gateway;
let dir: string;

it.beforeAll(async ({ startFileGateway }) => {
  emulator = await startEmulator();
  dir = mkdtempSync(path.join(tmpdir(), "readme-it-"));
  gateway = await startFileGateway({ TEXT2IMAGE_SERVER_URL: emulator.url });
});

afterAll(async () => {
  await emulator.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the README's Jobs section", () => {
  it("runs as written: the job ends succeeded, its events resume just after event 4, its image is the GPU server's, the slow job is canceled", async () => {
    const block = bashBlockUnder("## Jobs");
    expect(block).toContain("localhost:3000");
    const script = block.replaceAll("localhost:3000", new URL(gateway.url).host);
    // The project's node and the found curl come first, as on a machine that has them.
    const PATH = [path.dirname(process.execPath), path.dirname(curlPath()), process.env.PATH].join(path.delimiter);
    const { stdout } = await promisify(execFile)("bash", ["-euo", "pipefail", "-c", script], { cwd: dir, env: { ...process.env, PATH }, timeout: 60_000 });

    const job = JSON.parse(readFileSync(path.join(dir, "job.json"), "utf8")) as JobBody;
    expect(job.status).toBe("succeeded");
    // The whole stream, then the resumed one from just after event 4: id 1 once, id 5 twice, the end twice
    // (curl prints each answer right after the last, with no newline between).
    expect(stdout.match(/\bid: 1\n/g)).toHaveLength(1);
    expect(stdout.match(/\bid: 4\n/g)).toHaveLength(1);
    expect(stdout.match(/\bid: 5\n/g)).toHaveLength(2);
    expect(stdout.match(/"type": ?"complete"/g)).toHaveLength(2);

    const image = readFileSync(path.join(dir, "fox.jpg"));
    expect(createHash("sha256").update(image).digest("hex")).toBe(job.output?.sha256);
    const { prompt, width, height, num_inference_steps } = job.input;
    const direct = await directImage(emulator.url, `{"prompt":${JSON.stringify(prompt)},"width":${width},"height":${height},"num_inference_steps":${num_inference_steps},"seed":${job.output?.seed ?? ""}}`);
    expect(`data:image/jpeg;base64,${image.toString("base64")}`).toBe(direct);

    const slow = JSON.parse(readFileSync(path.join(dir, "slow.json"), "utf8")) as JobBody;
    expect(["queued", "running"]).toContain(slow.status);
    // curl prints the answers with no newline between them: the cancel's job is the last.
    const canceled = JSON.parse(stdout.slice(stdout.lastIndexOf('{"id":'))) as JobBody;
    expect(canceled).toMatchObject({ id: slow.id, status: "canceled" });
  });
});
