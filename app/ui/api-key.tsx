"use client";

import { useSyncExternalStore } from "react";
import type { Ref } from "react";
import useSWR from "swr";
import { z } from "zod";
import { SIZE_MULTIPLE_DEFAULT } from "@/lib/schemas";
import styles from "./api-key.module.css";

/** Where the key is kept: this tab only, gone when it closes. */
const STORAGE_KEY = "text2image-gateway.api-key";
export const API_KEY_FIELD_ID = "api-key";

/** GET /api, as far as the page reads it. */
const GatewayInfo = z.object({ api_key_required: z.boolean().optional(), size_multiple: z.int().positive().optional(), jobs: z.boolean().optional() });

async function fetchInfo(url: string): Promise<z.output<typeof GatewayInfo>> {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`GET /api answered ${response.status}`);
  return GatewayInfo.parse(await response.json());
}

/** Whether the gateway asks for an API key (GATEWAY_API_KEYS); false until it says so. */
export function useKeyRequired(): boolean {
  return useGatewayInfo()?.api_key_required ?? false;
}

/** SIZE_MULTIPLE of the gateway, for the form's own check; the default until GET /api says. */
export function useSizeMultiple(): number {
  return useGatewayInfo()?.size_multiple ?? SIZE_MULTIPLE_DEFAULT;
}

/** Whether the gateway serves jobs (JOBS); undefined until GET /api says, false if it cannot be asked. */
export function useJobs(): boolean | undefined {
  const { data, error } = useSWR<z.output<typeof GatewayInfo>, unknown>("/api", fetchInfo, { revalidateOnFocus: false });
  return error === undefined ? data?.jobs : false;
}

function useGatewayInfo() {
  return useSWR("/api", fetchInfo, { revalidateOnFocus: false }).data;
}

// The key as an external store: sessionStorage when it works, else memory (storage may be off).
let memoryKey = "";
const listeners = new Set<() => void>();

function readKey(): string {
  try {
    return sessionStorage.getItem(STORAGE_KEY) ?? "";
  } catch {
    return memoryKey;
  }
}

function writeKey(key: string): void {
  memoryKey = key;
  try {
    if (key) sessionStorage.setItem(STORAGE_KEY, key);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage disabled or full: the key still works for this page
  }
  for (const listener of listeners) listener();
}

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => {
    listeners.delete(listener);
  };
}

/** The API key typed on this page, kept in sessionStorage: this tab only, gone when it closes. */
export function useApiKey(): [string, (key: string) => void] {
  // The server render (and hydration) sees no key; the browser's stored one follows.
  const key = useSyncExternalStore(subscribe, readKey, () => "");
  return [key, writeKey];
}

interface Props {
  value: string;
  onChange: (key: string) => void;
  /** The gateway refused the key (401): the field says so to assistive technology too. */
  rejected: boolean;
  inputRef?: Ref<HTMLInputElement>;
}

/** The API key, as a password field; sent as `Authorization: Bearer <key>`. */
export function ApiKeyField({ value, onChange, rejected, inputRef }: Props) {
  return (
    <div className="field">
      <label htmlFor={API_KEY_FIELD_ID}>API key</label>
      <input
        ref={inputRef}
        id={API_KEY_FIELD_ID}
        className={styles.input}
        type="password"
        autoComplete="off"
        spellCheck={false}
        value={value}
        aria-invalid={rejected ? true : undefined}
        aria-describedby="api-key-hint"
        onChange={(event) => {
          onChange(event.target.value);
        }}
      />
      <p className="hint" id="api-key-hint">
        This gateway needs a key. It stays in this browser tab only.
      </p>
    </div>
  );
}
