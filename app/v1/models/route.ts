import { route } from "@/lib/http";
import { listModels } from "@/lib/openai-models";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";

/** GET /v1/models: the one image model, for apps that list models first. */
export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = route(ROUTES.openAiModels, { GET: listModels });
