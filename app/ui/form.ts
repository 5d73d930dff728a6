/** The form's state and its mapping to a generate request. No React here. */
import type { GenerateRequest, ValidationDetail } from "@/lib/schemas";

export const SIZE_PRESETS = {
  square: { label: "Square", width: 1024, height: 1024 },
  portrait: { label: "Portrait", width: 832, height: 1216 },
  landscape: { label: "Landscape", width: 1216, height: 832 },
} as const;
export type SizePreset = keyof typeof SIZE_PRESETS;
export type SizeChoice = SizePreset | "custom";

/** What the inputs hold: numbers stay text so a half-typed value is not lost. */
export interface FormValues {
  prompt: string;
  negativePrompt: string;
  size: SizeChoice;
  width: string;
  height: string;
  steps: string;
  seedMode: "random" | "fixed";
  seed: string;
  guidance: string;
}

export const DEFAULT_VALUES: FormValues = {
  prompt: "",
  negativePrompt: "",
  size: "square",
  width: "1024",
  height: "1024",
  steps: "9",
  seedMode: "random",
  seed: "",
  guidance: "0",
};

/** The request field a form control edits, as it appears in a 422 `loc`. */
export type Field = keyof GenerateRequest;

/**
 * Numbers for the validator. Text that is not a number is passed on as text,
 * so the shared schema reports "should be a valid integer" rather than the
 * page inventing its own wording.
 */
function numeric(text: string): number | string {
  const value = Number(text);
  return text.trim() === "" || Number.isNaN(value) ? text : value;
}

/** The request body the form describes, before validation. */
export function toRequestBody(values: FormValues): Record<Field, unknown> {
  const preset = values.size === "custom" ? null : SIZE_PRESETS[values.size];
  return {
    prompt: values.prompt,
    negative_prompt: values.negativePrompt,
    width: preset ? preset.width : numeric(values.width),
    height: preset ? preset.height : numeric(values.height),
    seed: values.seedMode === "random" ? -1 : numeric(values.seed),
    num_inference_steps: numeric(values.steps),
    guidance_scale: numeric(values.guidance),
  };
}

/** The form that reproduces a request (with the seed that was actually used). */
export function fromRequest(request: GenerateRequest, seed: number): FormValues {
  const preset = (Object.keys(SIZE_PRESETS) as SizePreset[]).find(
    (key) => SIZE_PRESETS[key].width === request.width && SIZE_PRESETS[key].height === request.height,
  );
  return {
    prompt: request.prompt,
    negativePrompt: request.negative_prompt,
    size: preset ?? "custom",
    width: String(request.width),
    height: String(request.height),
    steps: String(request.num_inference_steps),
    seedMode: seed === -1 ? "random" : "fixed",
    seed: seed === -1 ? "" : String(seed),
    guidance: String(request.guidance_scale),
  };
}

/** One message per field, from a 422-style detail list (`loc` is ["body", field]). */
export function messagesByField(detail: ValidationDetail[]): Partial<Record<Field, string>> {
  const messages: Partial<Record<Field, string>> = {};
  for (const { loc, msg } of detail) {
    const field = loc[1];
    if (typeof field === "string" && !(field in messages)) messages[field as Field] = msg;
  }
  return messages;
}

/** A download name such as `red-fox-in-snow-1234.png`. */
export function downloadName(prompt: string, seed: number): string {
  const slug = prompt
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "") // accents, split off by NFKD
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .slice(0, 60)
    .replace(/^-+|-+$/g, "");
  return `${slug || "image"}-${seed}.png`;
}
