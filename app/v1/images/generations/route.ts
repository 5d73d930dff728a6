import { route } from "@/lib/http";
import { generateImages } from "@/lib/openai";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";
// As the generate routes' (a test holds them together): the queue wait and the generations end before Vercel ends the function.
export const maxDuration = 300;

/** POST /v1/images/generations: OpenAI's Images API, for its SDKs and the apps built on them. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.openAiImages, { POST: generateImages });
