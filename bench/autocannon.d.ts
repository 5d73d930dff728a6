// The part of autocannon 8's programmatic API the benchmark uses (the package ships no types).
declare module "autocannon" {
  export interface Options {
    url: string;
    connections?: number;
    /** Seconds. */
    duration?: number;
    method?: "GET" | "POST";
    headers?: Record<string, string>;
    body?: string | Buffer;
    /** Seconds before a request counts as a timeout. */
    timeout?: number;
  }

  export interface Stats {
    average: number;
    min: number;
    max: number;
    total: number;
    p50: number;
    p99: number;
  }

  export interface Result {
    /** Seconds, as measured by autocannon. */
    duration: number;
    errors: number;
    timeouts: number;
    non2xx: number;
    resets: number;
    requests: Stats & { sent: number };
    latency: Stats;
    throughput: Stats;
    statusCodeStats: Record<string, { count: number } | undefined>;
  }

  /** A running load: a thenable that settles with the result, and an emitter of each response. */
  export interface Instance extends PromiseLike<Result> {
    on(event: "response", listener: (client: unknown, statusCode: number, bytes: number, responseTimeMs: number) => void): this;
  }

  export default function autocannon(options: Options): Instance;
}
