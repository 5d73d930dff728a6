/**
 * One instance per process. Next bundles each route separately, so plain
 * module state would give every route its own limiter and pool; globalThis is
 * the one thing they share.
 */
export function processSingleton<T>(name: string, create: () => T): T {
  const key = Symbol.for(`text2image-gateway.${name}`);
  const store = globalThis as typeof globalThis & Record<symbol, T | undefined>;
  store[key] ??= create();
  return store[key];
}
