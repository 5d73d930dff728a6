import "server-only";
import { config } from "./config";
import { fail } from "./errors";
import { readJsonObject, streamedJson } from "./http";
import { limiter } from "./limiter";
import type { GenerateRequest } from "./schemas";
import { validateGenerateRequest } from "./schemas";
import { upstream } from "./upstream";

/** Reads and validates a generate body; nothing invalid goes further. */
export async function readGenerateRequest(request: Request): Promise<GenerateRequest> {
  const body = await readJsonObject(request, config().maxBodyBytes);
  const result = validateGenerateRequest(body);
  if (!result.ok) throw fail.validation(result.detail);
  return result.data;
}

/**
 * POST /api/generate: validate, wait for a slot, forward, and stream the
 * upstream's answer back unchanged. The slot is freed as soon as the GPU
 * server has answered, not when the client has read the image.
 */
export async function generate(request: Request): Promise<Response> {
  const params = await readGenerateRequest(request);
  const slot = await limiter().acquire(request.signal);
  let answer: Buffer;
  try {
    answer = await upstream().generate(params, request.signal);
  } finally {
    slot.release();
  }
  return streamedJson(answer);
}
