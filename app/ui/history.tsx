"use client";

import { useState } from "react";
import { HISTORY_LIMIT } from "./use-history";
import type { HistoryEntry } from "./use-history";

interface Props {
  /** Undefined while loading. */
  entries: HistoryEntry[] | undefined;
  /** Why there is no history, when there is none to have. */
  unavailable: string | null;
  onSelect: (entry: HistoryEntry) => void;
}

/** Past results as thumbnails; choosing one restores its settings and shows it (if the gateway still has it). */
export function History({ entries, unavailable, onSelect }: Props) {
  // Images that did not load: the gateway no longer has them.
  const [missing, setMissing] = useState<ReadonlySet<string>>(new Set());
  return (
    <section className="history" aria-labelledby="history-title">
      <div className="history-head">
        <h2 id="history-title">History</h2>
      </div>
      {unavailable ? (
        <p className="hint">{unavailable}</p>
      ) : entries?.length ? (
        <ul className="history-list">
          {entries.map((entry) => {
            const expired = !entry.result || missing.has(entry.id);
            return (
              <li key={entry.id}>
                <button
                  type="button"
                  className="history-item"
                  data-expired={expired || undefined}
                  onClick={() => {
                    onSelect(expired ? { ...entry, result: undefined } : entry);
                  }}
                >
                  {expired ? (
                    <span className="history-expired">Image expired</span>
                  ) : (
                    // The gateway's image by URL, cached for good: nothing for next/image to optimise.
                    // eslint-disable-next-line @next/next/no-img-element
                    <img
                      src={entry.result?.image}
                      alt=""
                      width={entry.result?.width}
                      height={entry.result?.height}
                      loading="lazy"
                      decoding="async"
                      onError={() => {
                        setMissing((current) => new Set(current).add(entry.id));
                      }}
                    />
                  )}
                  <span className="history-prompt">{entry.request.prompt}</span>
                  <span className="visually-hidden">
                    , {entry.request.width}×{entry.request.height}, seed {String(entry.seed)}
                    {expired && ", image expired"}
                  </span>
                </button>
              </li>
            );
          })}
        </ul>
      ) : (
        <p className="hint">Your last {HISTORY_LIMIT} images appear here, kept by the gateway for a limited time.</p>
      )}
    </section>
  );
}
