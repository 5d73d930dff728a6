"use client";

import { useEffect, useRef, useState } from "react";
import { validateGenerateRequest } from "@/lib/schemas";
import { ApiKeyField, useApiKey, useJobs, useKeyRequired, useSizeMultiple } from "./api-key";
import { DEFAULT_VALUES, fromRequest, messagesByField, toRequestBody } from "./form";
import type { FormValues } from "./form";
import { FIELD_IDS, GenerateForm } from "./generate-form";
import { History } from "./history";
import { ResultView } from "./result-view";
import { StatusPanel } from "./status-panel";
import { isRunning, useGeneration } from "./use-generation";
import type { GenerationResult } from "./use-generation";
import { useHealth } from "./use-health";
import { useHistory } from "./use-history";
import type { HistoryEntry } from "./use-history";

/** The form, the live status, the result and the history, wired together. */
export function Generator() {
  const [values, setValues] = useState<FormValues>(DEFAULT_VALUES);
  // Errors show from the first failed submit on, then follow every edit.
  const [showErrors, setShowErrors] = useState(false);
  const [result, setResult] = useState<GenerationResult | null>(null);
  const keyRequired = useKeyRequired();
  const [apiKey, setApiKey] = useApiKey();
  const jobs = useJobs();
  const { state, run, cancel, resumed } = useGeneration({ jobs, apiKey });
  const health = useHealth();
  // Until GET /api says whether jobs are served, the page does not know how to generate.
  const blocker = health.blocker ?? (jobs === undefined ? "Connecting…" : null);
  // With API keys, the history is the key's: none to ask for without one.
  const keyMissing = keyRequired && apiKey.trim() === "";
  const history = useHistory(jobs && !keyMissing, apiKey);
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

  // A job taken up after a reload shows when it finishes, unless something else was chosen meanwhile.
  const shown = result ?? resumed;
  // Whenever a generation ends, the gateway's list has changed.
  const { mutate } = history;
  useEffect(() => {
    if (!running) void mutate();
  }, [running, mutate]);

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
    const finished = await run(validation.data);
    if (finished) setResult(finished);
  };

  const restore = (entry: HistoryEntry) => {
    setValues(fromRequest(entry.request, entry.seed));
    setShowErrors(false);
    if (entry.result) setResult(entry.result);
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
        {shown && (
          <ResultView
            result={shown}
            onReuseSeed={(seed) => {
              update({ seedMode: "fixed", seed: String(seed) });
            }}
          />
        )}
      </section>
      <History
        entries={history.data}
        unavailable={
          jobs === false
            ? "This gateway keeps no history (its jobs are off)."
            : keyMissing
              ? "Your history shows once the API key is entered."
              : history.error !== undefined
              ? "The history could not be loaded from the gateway."
              : null
        }
        onSelect={restore}
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
