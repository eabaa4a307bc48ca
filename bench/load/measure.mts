/** The figures of one run, computed in the load generator from every stream's raw timings. */

export type Target = 'direct' | 'raw-sse' | 'gateway-sse' | 'raw-socket.io' | 'gateway-socket.io' | 'raw-ws';

export interface RunSpec {
  target: Target;
  url: string;
  streams: number;
  tokens: number;
  tps: number;
  /** Streams opened per 10 ms tick: the controlled opening rate. */
  openPerTick: number;
  /** The text every stream must deliver (the simulator's, for this prompt), checked for loss and garbling. */
  expectedText: string;
}

export interface StreamResult {
  sentAt: number;
  firstTokenAt: number | undefined;
  latencies: number[];
  text: string;
  error: string | undefined;
}

export interface RunSummary {
  target: Target;
  streams: number;
  ttftMs: { p50: number; p99: number };
  tokenLatencyMs: { p50: number; p99: number; p999: number };
  /** 101 points (0th to 100th percentile) of the per-token added latency, for the CDF chart. */
  latencyCdf: number[];
  tokensDelivered: number;
  tokensExpected: number;
  tokensLost: number;
  garbledStreams: number;
  errors: number;
  firstError: string | undefined;
  tokensPerSecond: number;
  wallMs: number;
}

export function percentile(sorted: number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))];
}

export function summarise(spec: RunSpec, results: StreamResult[], wallMs: number): RunSummary {
  const ttfts = results
    .filter((result) => result.firstTokenAt !== undefined)
    .map((result) => (result.firstTokenAt as number) - result.sentAt)
    .sort((a, b) => a - b);
  const latencies = results.flatMap((result) => result.latencies).sort((a, b) => a - b);
  const delivered = results.reduce((sum, result) => sum + result.latencies.length, 0);
  const errors = results.filter((result) => result.error !== undefined);
  return {
    target: spec.target,
    streams: spec.streams,
    ttftMs: { p50: percentile(ttfts, 0.5), p99: percentile(ttfts, 0.99) },
    tokenLatencyMs: {
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99),
      p999: percentile(latencies, 0.999),
    },
    latencyCdf: Array.from({ length: 101 }, (_, index) => percentile(latencies, index / 100)),
    tokensDelivered: delivered,
    tokensExpected: spec.streams * spec.tokens,
    tokensLost: spec.streams * spec.tokens - delivered,
    garbledStreams: results.filter(
      (result) => result.error === undefined && result.text !== spec.expectedText,
    ).length,
    errors: errors.length,
    firstError: errors[0]?.error,
    tokensPerSecond: delivered / (wallMs / 1000),
    wallMs,
  };
}
