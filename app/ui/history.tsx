"use client";

import { HISTORY_LIMIT } from "./history-store";
import type { HistoryEntry } from "./history-store";

interface Props {
  entries: HistoryEntry[] | undefined;
  unavailable: boolean;
  onSelect: (entry: HistoryEntry) => void;
  onClear: () => void;
}

/** Past results as thumbnails; choosing one restores its settings and shows it. */
export function History({ entries, unavailable, onSelect, onClear }: Props) {
  return (
    <section className="history" aria-labelledby="history-title">
      <div className="history-head">
        <h2 id="history-title">History</h2>
        <button type="button" className="secondary" onClick={onClear} disabled={!entries?.length}>
          Clear history
        </button>
      </div>
      {unavailable ? (
        <p className="hint">History is not available in this browser (IndexedDB is off).</p>
      ) : entries?.length ? (
        <ul className="history-list">
          {entries.map((entry) => (
            <li key={entry.id}>
              <button
                type="button"
                className="history-item"
                onClick={() => {
                  onSelect(entry);
                }}
              >
                {/* A small JPEG data URI made in this browser. */}
                {/* eslint-disable-next-line @next/next/no-img-element */}
                <img src={entry.thumbnail} alt="" width={entry.width} height={entry.height} />
                <span className="history-prompt">{entry.request.prompt}</span>
                <span className="visually-hidden">
                  , {entry.width}×{entry.height}, seed {String(entry.seed)}
                </span>
              </button>
            </li>
          ))}
        </ul>
      ) : (
        <p className="hint">Your last {HISTORY_LIMIT} images appear here, kept in this browser.</p>
      )}
    </section>
  );
}
