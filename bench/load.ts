/** One autocannon load against one URL, with its own latency percentiles. */
import autocannon from "autocannon";

export interface LoadSpec {
  url: string;
  method: "GET" | "POST";
  body?: string;
  connections: number;
  /** Seconds. */
  duration: number;
}

export interface LoadResult {
  /** Answers completed per second (autocannon counts a response when its body, or stream, ends). */
  rps: number;
  /** Latencies of 2xx answers, request sent to last byte, in ms. */
  p50: number;
  p99: number;
  completed: number;
  /** Answers that were not 2xx, errors and timeouts: any makes the run suspect. */
  failures: number;
  /** Bytes per answer on average. */
  bytesPerAnswer: number;
}

/** Runs the load; autocannon's own histogram has 1 ms steps, so percentiles come from each response's timing. */
export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const latencies: number[] = [];
  const instance = autocannon({
    url: spec.url,
    method: spec.method,
    connections: spec.connections,
    duration: spec.duration,
    timeout: 30,
    ...(spec.body === undefined ? {} : { body: spec.body, headers: { "content-type": "application/json" } }),
  });
  instance.on("response", (_client, status, _bytes, ms) => {
    if (status >= 200 && status < 300) latencies.push(ms);
  });
  const result = await instance;
  latencies.sort((a, b) => a - b);
  const completed = result.requests.total;
  return {
    rps: completed / result.duration,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    completed,
    failures: result.non2xx + result.errors + result.timeouts,
    bytesPerAnswer: completed > 0 ? result.throughput.total / completed : 0,
  };
}

/** Nearest-rank percentile of sorted values; NaN for none. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}
