import { fail } from "@/lib/errors";
import { observe } from "@/lib/http";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";

/** Unknown /v1 paths answer OpenAI's JSON 404 (its SDKs raise NotFoundError), not Next's HTML page. */
const notFound = observe(ROUTES.openAiUnknown, (request) => {
  throw fail.notFound(new URL(request.url).pathname);
});

export { notFound as GET, notFound as HEAD, notFound as POST, notFound as PUT, notFound as PATCH, notFound as DELETE, notFound as OPTIONS };
