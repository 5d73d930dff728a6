/** After the run: the main gateway's jobs and images go with it. */
import { rmSync } from "node:fs";
import { E2E_DATA_DIR } from "./servers";

export default function teardown(): void {
  rmSync(E2E_DATA_DIR, { recursive: true, force: true });
}
