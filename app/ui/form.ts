/** The form's state and its mapping to a generate request. No React here. */
import type { GenerateRequest, Seed, ValidationDetail } from "@/lib/schemas";

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
 * The request body the form describes, before validation. Numbers stay the
 * text typed: the validator reads it as FastAPI would ("512" is 512, a
 * 20-digit seed keeps its digits) and words what it refuses the same way.
 */
export function toRequestBody(values: FormValues): Record<Field, unknown> {
  const preset = values.size === "custom" ? null : SIZE_PRESETS[values.size];
  return {
    prompt: values.prompt,
    negative_prompt: values.negativePrompt,
    width: preset ? preset.width : values.width,
    height: preset ? preset.height : values.height,
    seed: values.seedMode === "random" ? -1 : values.seed,
    num_inference_steps: values.steps,
    guidance_scale: values.guidance,
  };
}

/** The form that reproduces a request (with the seed that was actually used). */
export function fromRequest(request: GenerateRequest, seed: Seed): FormValues {
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

/** An image's type (`image/jpeg`, …) as a file extension and a name for people. */
export function imageType(contentType: string): { mime: string; extension: string; label: string } {
  const mime = contentType.toLowerCase();
  if (mime === "image/jpeg" || mime === "image/jpg") return { mime: "image/jpeg", extension: "jpg", label: "JPEG" };
  if (mime === "image/webp") return { mime, extension: "webp", label: "WebP" };
  return { mime: "image/png", extension: "png", label: "PNG" };
}

/** A download name such as `red-fox-in-snow-1234.jpg`, with the extension of the image's type. */
export function downloadName(prompt: string, seed: Seed, extension = "png"): string {
  const slug = prompt
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "") // accents, split off by NFKD
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .slice(0, 60)
    .replace(/^-+|-+$/g, "");
  return `${slug || "image"}-${String(seed)}.${extension}`;
}
