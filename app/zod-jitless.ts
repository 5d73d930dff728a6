/**
 * The page's first script, before any bundle (app/layout.tsx): zod 4 probes
 * `new Function("")` when its first object schema is built (to compile fast
 * parsers) and, under the pages' CSP, the browser reports that probe as a
 * violation even though zod catches it. `jitless` skips the probe; zod keeps
 * its global config at globalThis.__zod_globalConfig
 * (tests/unit/security-csp.test.ts runs this script before zod and checks
 * that zod then never builds a Function).
 */
export const ZOD_JITLESS = "globalThis.__zod_globalConfig=Object.assign(globalThis.__zod_globalConfig||{},{jitless:true});";
