"use client";

import { useState } from "react";
import { downloadName, imageType } from "./form";
import { formatSeconds } from "./status-panel";
import type { GenerationResult } from "./use-generation";
import type { Seed } from "@/lib/schemas";

interface Props {
  result: GenerationResult;
  onReuseSeed: (seed: Seed) => void;
}

export function ResultView({ result, onReuseSeed }: Props) {
  const [copyNote, setCopyNote] = useState("");
  const type = imageType(result.contentType);
  const copySeed = async () => {
    try {
      // Throws where the Clipboard API is missing (plain-http pages) or denied.
      await navigator.clipboard.writeText(String(result.seed));
      setCopyNote("Seed copied.");
    } catch {
      setCopyNote(`Could not copy; the seed is ${String(result.seed)}.`);
    }
  };
  return (
    <figure className="result">
      {/* The gateway's image by URL (or a data URI from the stream): nothing for next/image to optimise. */}
      {/* eslint-disable-next-line @next/next/no-img-element */}
      <img
        className="result-image"
        src={result.image}
        width={result.width}
        height={result.height}
        alt={`Generated from the prompt: ${result.request.prompt}`}
      />
      <figcaption>
        <dl className="facts">
          <div>
            <dt>Seed</dt>
            <dd data-testid="result-seed">{String(result.seed)}</dd>
          </div>
          <div>
            <dt>Size</dt>
            <dd>
              {result.width}×{result.height}
            </dd>
          </div>
          <div>
            <dt>Time</dt>
            <dd>{formatSeconds(result.generationTimeMs)}</dd>
          </div>
        </dl>
        <div className="actions">
          <a className="button" href={result.image} type={type.mime} download={downloadName(result.request.prompt, result.seed, type.extension)}>
            Download {type.label}
          </a>
          <button type="button" className="secondary" onClick={() => void copySeed()}>
            Copy seed
          </button>
          <button
            type="button"
            className="secondary"
            onClick={() => {
              onReuseSeed(result.seed);
            }}
          >
            Reuse seed
          </button>
        </div>
        <p className="hint" aria-live="polite">
          {copyNote}
        </p>
      </figcaption>
    </figure>
  );
}
