/**
 * Preloaded (`node --import …/die-with-parent.mjs?parent=<pid>`) into every
 * gateway a test starts: the gateway exits once the process that started it is
 * gone, however that one ended (a killed or crashed test runner leaves no
 * server listening, reparented to init). The starter names itself in the URL:
 * it may be gone before this runs.
 */
const parent = Number(new URL(import.meta.url).searchParams.get("parent")) || process.ppid;
const check = () => {
  if (process.ppid !== parent) process.exit(1);
};
check();
setInterval(check, 500).unref();
