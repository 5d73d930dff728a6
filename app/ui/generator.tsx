"use client";

import { useEffect, useRef, useState } from "react";
import useSWR from "swr";
import { validateGenerateRequest } from "@/lib/schemas";
import { ApiKeyField, useApiKey, useKeyRequired, useSizeMultiple } from "./api-key";
import { DEFAULT_VALUES, fromRequest, messagesByField, toRequestBody } from "./form";
import type { FormValues } from "./form";
import { FIELD_IDS, GenerateForm } from "./generate-form";
import { History } from "./history";
import { addToHistory, clearHistory, listHistory, loadImage } from "./history-store";
import type { HistoryEntry } from "./history-store";
import { ResultView } from "./result-view";
import { StatusPanel } from "./status-panel";
import { isRunning, useGeneration } from "./use-generation";
import type { GenerationResult } from "./use-generation";
import { useHealth } from "./use-health";

/** The form, the live status, the result and the history, wired together. */
export function Generator() {
  const [values, setValues] = useState<FormValues>(DEFAULT_VALUES);
  // Errors show from the first failed submit on, then follow every edit.
  const [showErrors, setShowErrors] = useState(false);
  const [result, setResult] = useState<GenerationResult | null>(null);
  const { state, run, cancel } = useGeneration();
  const { blocker } = useHealth();
  const history = useSWR("indexeddb:history", listHistory, { revalidateOnFocus: false });
  const keyRequired = useKeyRequired();
  const [apiKey, setApiKey] = useApiKey();
  const keyRejected = state.phase === "error" && state.keyRejected === true;
  // GET /api says whether a key is needed; a 401 shows the field too, should the gateway have changed its mind.
  const askForKey = keyRequired || keyRejected;
  const keyRef = useRef<HTMLInputElement>(null);
  useEffect(() => {
    // After a 401, the key is what to fix: focus goes there (this runs after Actions moved it to Generate).
    if (keyRejected) keyRef.current?.focus();
  }, [keyRejected]);

  const validation = validateGenerateRequest(toRequestBody(values), { sizeMultiple: useSizeMultiple() });
  const errors = showErrors && !validation.ok ? messagesByField(validation.detail) : {};
  const running = isRunning(state);

  const update = (patch: Partial<FormValues>) => {
    setValues((current) => ({ ...current, ...patch }));
  };

  const submit = async () => {
    if (running || blocker) return;
    if (!validation.ok) {
      setShowErrors(true);
      const first = messagesByField(validation.detail);
      const field = (Object.keys(FIELD_IDS) as (keyof typeof FIELD_IDS)[]).find((key) => key in first);
      if (field) document.getElementById(FIELD_IDS[field])?.focus();
      return;
    }
    setShowErrors(false);
    const finished = await run(validation.data, apiKey);
    if (!finished) return;
    setResult(finished);
    // A full or private IndexedDB must not spoil the result on screen.
    await addToHistory(finished).catch((error: unknown) => {
      console.warn("Could not save to history", error);
    });
    await history.mutate();
  };

  const restore = async (entry: HistoryEntry) => {
    setValues(fromRequest(entry.request, entry.seed));
    setShowErrors(false);
    const image = await loadImage(entry.id).catch(() => undefined);
    if (image) {
      const { request, seed, width, height, generationTimeMs } = entry;
      setResult({ image, request, seed, width, height, generationTimeMs });
    }
  };

  const clear = async () => {
    await clearHistory().catch((error: unknown) => {
      console.warn("Could not clear the history", error);
    });
    await history.mutate();
  };

  return (
    <div className="layout">
      <section className="panel" aria-labelledby="form-title">
        <h2 id="form-title">Describe the image</h2>
        <GenerateForm
          values={values}
          errors={errors}
          onChange={update}
          header={askForKey && <ApiKeyField value={apiKey} onChange={setApiKey} rejected={keyRejected} inputRef={keyRef} />}
          onSubmit={() => void submit()}
        >
          <Actions running={running} blocker={blocker} onCancel={cancel} />
        </GenerateForm>
      </section>
      <section className="panel output" aria-labelledby="output-title">
        <h2 id="output-title">Result</h2>
        <StatusPanel state={state} />
        {result && (
          <ResultView
            result={result}
            onReuseSeed={(seed) => {
              update({ seedMode: "fixed", seed: String(seed) });
            }}
          />
        )}
      </section>
      <History
        entries={history.data}
        unavailable={history.error !== undefined}
        onSelect={(entry) => void restore(entry)}
        onClear={() => void clear()}
      />
    </div>
  );
}

interface ActionsProps {
  running: boolean;
  blocker: string | null;
  onCancel: () => void;
}

/** Generate and Cancel; keyboard focus follows whichever of the two can be used. */
function Actions({ running, blocker, onCancel }: ActionsProps) {
  const generateRef = useRef<HTMLButtonElement>(null);
  const cancelRef = useRef<HTMLButtonElement>(null);
  const wasRunning = useRef(running);
  useEffect(() => {
    if (wasRunning.current === running) return;
    wasRunning.current = running;
    // A button that becomes disabled or disappears drops focus to <body>.
    const active = document.activeElement;
    const lost = active === null || active === document.body || active === generateRef.current;
    if (running && lost) cancelRef.current?.focus();
    if (!running && (lost || active === cancelRef.current)) generateRef.current?.focus();
  }, [running]);
  return (
    <div className="actions">
      <button ref={generateRef} type="submit" data-testid="generate" disabled={running || blocker !== null}>
        {running ? "Generating…" : (blocker ?? "Generate")}
      </button>
      {running && (
        <button ref={cancelRef} type="button" className="danger" onClick={onCancel}>
          Cancel
        </button>
      )}
    </div>
  );
}
