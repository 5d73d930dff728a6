import { fail } from "@/lib/errors";
import { observe } from "@/lib/http";
import { ROUTES } from "@/lib/routes";

export const dynamic = "force-dynamic";

/** Unknown /api paths answer JSON like every other endpoint, not Next's HTML 404. */
const notFound = observe(ROUTES.unknown, (request) => {
  throw fail.notFound(new URL(request.url).pathname);
});

export { notFound as GET, notFound as HEAD, notFound as POST, notFound as PUT, notFound as PATCH, notFound as DELETE, notFound as OPTIONS };
