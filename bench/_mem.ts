import { runLoad } from "./load";
import { GENERATE_BODY, startBaseline, startEmulator, startGateway } from "./servers";
const emulator = await startEmulator();
for (const [name, start] of [["baseline", startBaseline], ["gateway", startGateway]] as const) {
  const s = await start({ upstreamUrl: emulator.url, nodeFlags: ["--require", "/tmp/memlog.cjs"], env: { MEMLOG: `/tmp/mem-${name}.txt` } });
  await runLoad({ url: s.url + "/api/generate", method: "POST", body: GENERATE_BODY, connections: 16, duration: 13 });
  await s.stop();
}
await emulator.stop();
