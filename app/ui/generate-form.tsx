"use client";

import type { ChangeEvent, KeyboardEvent, ReactNode } from "react";
import { SIZE_MAX, SIZE_MIN, STEPS_MAX, STEPS_MIN } from "@/lib/schemas";
import { useSizeMultiple } from "./api-key";
import { SIZE_PRESETS } from "./form";
import type { Field, FormValues, SizeChoice } from "./form";

/** The element id of each request field's control, for labels, errors and focus. */
export const FIELD_IDS: Record<Field, string> = {
  prompt: "prompt",
  negative_prompt: "negative-prompt",
  width: "width",
  height: "height",
  seed: "seed",
  num_inference_steps: "steps",
  guidance_scale: "guidance",
};

interface Props {
  values: FormValues;
  errors: Partial<Record<Field, string>>;
  onChange: (patch: Partial<FormValues>) => void;
  /** Fields above the prompt (the API key, when the gateway asks for one). */
  header?: ReactNode;
  children: ReactNode;
  onSubmit: () => void;
}

/** Accessibility props for a control whose request field may have an error. */
function describedBy(field: Field, errors: Props["errors"], hint?: string) {
  const ids = [hint, errors[field] ? `${FIELD_IDS[field]}-error` : undefined].filter(Boolean);
  return { id: FIELD_IDS[field], "aria-invalid": errors[field] ? true : undefined, "aria-describedby": ids.join(" ") || undefined };
}

function FieldError({ field, errors }: { field: Field; errors: Props["errors"] }) {
  const message = errors[field];
  return message ? (
    <p className="field-error" id={`${FIELD_IDS[field]}-error`}>
      {message}
    </p>
  ) : null;
}

/** Ctrl+Enter (Cmd+Enter on a Mac) submits from the text areas, as in chat apps. */
function submitOnCtrlEnter(event: KeyboardEvent<HTMLTextAreaElement>) {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    event.currentTarget.form?.requestSubmit();
  }
}

export function GenerateForm({ values, errors, onChange, header, children, onSubmit }: Props) {
  const text = (key: keyof FormValues) => (event: ChangeEvent<HTMLInputElement | HTMLTextAreaElement>) => {
    onChange({ [key]: event.target.value });
  };
  return (
    <form
      className="form"
      noValidate // the shared schema validates, with the gateway's own messages
      onSubmit={(event) => {
        event.preventDefault();
        onSubmit();
      }}
    >
      <div className="form-body">
        {header}
        <div className="field">
          <label htmlFor={FIELD_IDS.prompt}>Prompt</label>
          <textarea
            {...describedBy("prompt", errors, "prompt-hint")}
            rows={3}
            value={values.prompt}
            onChange={text("prompt")}
            onKeyDown={submitOnCtrlEnter}
            placeholder="e.g. a red fox in snow at dawn, soft light"
          />
          <p className="hint" id="prompt-hint">
            Ctrl+Enter or ⌘+Enter generates.
          </p>
          <FieldError field="prompt" errors={errors} />
        </div>

        <div className="field">
          <label htmlFor={FIELD_IDS.negative_prompt}>Negative prompt</label>
          <textarea
            {...describedBy("negative_prompt", errors)}
            rows={2}
            value={values.negativePrompt}
            onChange={text("negativePrompt")}
            onKeyDown={submitOnCtrlEnter}
            placeholder="What to keep out of the image"
          />
          <FieldError field="negative_prompt" errors={errors} />
        </div>

        <SizeFields values={values} errors={errors} onChange={onChange} />

        <div className="field-row">
          <div className="field">
            <label htmlFor={FIELD_IDS.num_inference_steps}>Steps</label>
            <input
              {...describedBy("num_inference_steps", errors)}
              type="number"
              inputMode="numeric"
              min={STEPS_MIN}
              max={STEPS_MAX}
              value={values.steps}
              onChange={text("steps")}
            />
            <FieldError field="num_inference_steps" errors={errors} />
          </div>
          <div className="field">
            <label htmlFor={FIELD_IDS.guidance_scale}>Guidance</label>
            <input
              {...describedBy("guidance_scale", errors)}
              type="number"
              inputMode="decimal"
              step={0.1}
              value={values.guidance}
              onChange={text("guidance")}
            />
            <FieldError field="guidance_scale" errors={errors} />
          </div>
          <div className="field">
            <label htmlFor={FIELD_IDS.seed}>Seed</label>
            <input
              {...describedBy("seed", errors)}
              type="number"
              inputMode="numeric"
              disabled={values.seedMode === "random"}
              value={values.seedMode === "random" ? "" : values.seed}
              placeholder={values.seedMode === "random" ? "random" : ""}
              onChange={text("seed")}
            />
            <label className="choice">
              <input
                type="checkbox"
                checked={values.seedMode === "random"}
                onChange={(event) => {
                  onChange({ seedMode: event.target.checked ? "random" : "fixed" });
                }}
              />
              Random seed
            </label>
            <FieldError field="seed" errors={errors} />
          </div>
        </div>

      </div>
      {children}
    </form>
  );
}

function SizeFields({ values, errors, onChange }: Pick<Props, "values" | "errors" | "onChange">) {
  const sizeMultiple = useSizeMultiple();
  const text = (key: "width" | "height") => (event: ChangeEvent<HTMLInputElement>) => {
    onChange({ [key]: event.target.value });
  };
  const presets = Object.entries(SIZE_PRESETS).map(
    ([key, { label, width, height }]): [SizeChoice, string] => [key as SizeChoice, `${label} ${width}×${height}`],
  );
  const choices: [SizeChoice, string][] = [...presets, ["custom", "Custom"]];
  return (
    <fieldset className="group">
      <legend>Size</legend>
      <div className="choices">
        {choices.map(([key, label]) => (
          <label className="choice" key={key}>
            <input
              type="radio"
              name="size"
              value={key}
              checked={values.size === key}
              onChange={() => {
                onChange({ size: key });
              }}
            />
            {label}
          </label>
        ))}
      </div>
      {values.size === "custom" && (
        <div className="field-row">
          {(["width", "height"] as const).map((field) => (
            <div className="field" key={field}>
              <label htmlFor={FIELD_IDS[field]}>{field === "width" ? "Width" : "Height"} (px)</label>
              <input
                {...describedBy(field, errors, "size-hint")}
                type="number"
                inputMode="numeric"
                min={SIZE_MIN}
                max={SIZE_MAX}
                step={sizeMultiple}
                value={values[field]}
                onChange={text(field)}
              />
              <FieldError field={field} errors={errors} />
            </div>
          ))}
          <p className="hint" id="size-hint">
            {SIZE_MIN}–{SIZE_MAX} px, in multiples of {sizeMultiple}.
          </p>
        </div>
      )}
    </fieldset>
  );
}
