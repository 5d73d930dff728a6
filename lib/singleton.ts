/**
 * One instance per process. Next bundles each route separately, so plain
 * module state would give every route its own limiter and pool; globalThis is
 * the one thing they share.
 */
export function processSingleton<T>(name: string, create: () => T): T {
  const key = keyOf(name);
  const store = globalThis as typeof globalThis & Record<symbol, T | undefined>;
  store[key] ??= create();
  return store[key];
}

// Called several times per request: Symbol.for is a registry lookup by a string built each time.
const keys = new Map<string, symbol>();

function keyOf(name: string): symbol {
  let key = keys.get(name);
  if (key === undefined) {
    key = Symbol.for(`text2image-gateway.${name}`);
    keys.set(name, key);
  }
  return key;
}
