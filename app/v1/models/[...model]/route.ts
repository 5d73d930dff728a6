import { route } from "@/lib/http";
import { retrieveModel } from "@/lib/openai-models";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";

/** GET /v1/models/{model}: the one image model by its name, else OpenAI's 404. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.openAiModel, { GET: retrieveModel });
