import type { ServerResponse } from "node:http";

/** See node-guard.mjs: guards every Node http server of this process; the peer stamp's header, and a hook on each response. */
export function installNodeGuard(): { header: string; watchResponses: (watch: (response: ServerResponse) => void) => void };
