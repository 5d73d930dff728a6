/**
 * s3rver in a process of its own, for the benchmarks: in the benchmark's
 * process it would share that process's CPU with the load it is timed by.
 * Prints one JSON line (tests/s3-server.ts's `env`), then serves until SIGTERM.
 */
import { startS3Server } from "../tests/s3-server";

const server = await startS3Server();
console.log(JSON.stringify(server.env));
process.once("SIGTERM", () => {
  void server.close().finally(() => process.exit(0));
});
