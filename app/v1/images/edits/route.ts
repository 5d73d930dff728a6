import { route } from "@/lib/http";
import { refuseImageInput } from "@/lib/openai-models";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";

/** POST /v1/images/edits: OpenAI's 400, as the GPU server takes no input image (LibreChat's and Open WebUI's edit tools call it). */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.openAiEdits, { POST: refuseImageInput });
