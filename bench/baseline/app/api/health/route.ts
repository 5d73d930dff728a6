export const dynamic = "force-dynamic";

// The shape of the gateway's answer, fixed: no upstream call, no limiter.
const HEALTH = {
  status: "healthy",
  gateway: "running",
  in_flight: 0,
  queued: 0,
  max_concurrent: 10,
  max_queue: 100,
  text2image_server: {
    status: "healthy",
    model_loaded: true,
    cuda_available: true,
    current_queue_size: 0,
    active_generations: 0,
    available_slots: 4,
  },
};

/** GET /api/health: a small fixed JSON, the floor for a Next.js JSON route. */
export function GET(): Response {
  return Response.json(HEALTH, { headers: { "cache-control": "no-store" } });
}
