/** What one run is asked to do, what each stream records, and the figures computed from every stream's timings. */

export const TARGETS = [
  'direct',
  'raw-sse',
  'gateway-sse',
  // The gateway on an upstream table of two deployments (issue 24): the happy path's cost against gateway-sse.
  'gateway-sse+table',
  // The hedging point's targets (orchestrator/upstream-tables.mts): they run there and nowhere else.
  'gateway-sse+fast',
  'gateway-sse+tail',
  'gateway-sse+tail+hedge',
  'gateway-sse+tail+hedge-early',
  // Issue 22 (orchestrator/tracing.mts): tracing on, exporting to a sink on loopback; and another commit's build,
  // run like gateway-sse (only with --baseline=<ref>): what tracing costs on, and off against the build before it.
  'gateway-sse+otel',
  'gateway-sse@baseline',
  'openai',
  'gateway-sse+redis',
  'gateway-sse+redis-cross',
  'raw-socket.io',
  'gateway-socket.io',
  'gateway-socket.io+redis',
  'raw-ws',
] as const;
export type Target = (typeof TARGETS)[number];

export interface RunSpec {
  target: Target;
  /** The target's base URL (the simulator's `/v1` URL for `direct`). */
  url: string;
  streams: number;
  tokens: number;
  tps: number;
  /** The upstream's time to first token, asked of the simulator (0 but at the hedging point). */
  ttftMs: number;
  /** Streams opened per second, on an absolute schedule: the controlled opening rate. */
  openPerSecond: number;
  /** Open each stream once the previous one has ended, instead of on the schedule. */
  oneByOne: boolean;
  /** The text every stream must deliver (the simulator's, for this prompt), checked for loss and garbling. */
  expectedText: string;
  /** Streams still open this long after the first was opened are aborted and counted as errors (`timeout`). */
  deadlineMs: number;
}

/** Messages from the load generator to the orchestrator (IPC): `warmed`, then `streaming`s, then `summary`. */
export type LoadgenMessage =
  | { kind: 'warmed'; errors: number; firstError: string | undefined }
  /** Every 250 ms while measuring: streams that have their first token and have not ended. */
  | { kind: 'streaming'; count: number }
  | { kind: 'summary'; summary: RunSummary };

export interface StreamResult {
  sentAt: number;
  firstTokenAt: number | undefined;
  endedAt: number | undefined;
  /** Receipt minus the simulator's emission stamp, per token, in ms. */
  latencies: number[];
  text: string;
  /** Protocol faults that are not transport errors: a seq gap, a token without its stamp. */
  faults: string[];
  error: string | undefined;
}

export interface RunSummary {
  target: Target;
  streams: number;
  ttftMs: { p50: number; p99: number };
  /** Streams whose first token took over a second: at the hedging point, the ones a 3 s tail held. */
  ttftOver1s: number;
  tokenLatencyMs: { p50: number; p99: number; p999: number };
  /** 101 points (0th to 100th percentile) of the per-token added latency, for the CDF chart. */
  latencyCdf: number[];
  tokensDelivered: number;
  tokensExpected: number;
  tokensLost: number;
  /** Streams that ended normally but whose text or sequence differs from what the simulator emitted. */
  garbledStreams: number;
  errors: number;
  firstError: string | undefined;
  tokensPerSecond: number;
  /** From the first stream opened to the last one ended. */
  wallMs: number;
  /** How long opening every stream took: the rate actually achieved. */
  rampMs: number;
  /** The load generator's own CPU over the run, in cores: near 1 means the client, not the target, was the limit. */
  loadgenCores: number;
}

/** What every stream asks for: a fixed schedule, each token stamped with its emission time. */
export function streamPrompt(tokens: number, tps: number, ttftMs = 0): string {
  return `[sim emit_ts tokens=${tokens} tps=${tps} ttft=${ttftMs} jitter=0] benchmark`;
}

export function percentile(sorted: number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))];
}

export function summarise(
  spec: RunSpec,
  results: StreamResult[],
  timing: { wallMs: number; rampMs: number; cpuMs: number },
): RunSummary {
  const ttfts = results
    .filter((result) => result.firstTokenAt !== undefined)
    .map((result) => (result.firstTokenAt as number) - result.sentAt)
    .sort((a, b) => a - b);
  const latencies = results.flatMap((result) => result.latencies).sort((a, b) => a - b);
  const delivered = latencies.length;
  const errors = results.filter((result) => result.error !== undefined);
  const garbled = results.filter(
    (result) => result.error === undefined && (result.text !== spec.expectedText || result.faults.length > 0),
  );
  return {
    target: spec.target,
    streams: spec.streams,
    ttftMs: { p50: percentile(ttfts, 0.5), p99: percentile(ttfts, 0.99) },
    ttftOver1s: ttfts.filter((ttft) => ttft > 1000).length,
    tokenLatencyMs: {
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99),
      p999: percentile(latencies, 0.999),
    },
    latencyCdf: Array.from({ length: 101 }, (_, index) => percentile(latencies, index / 100)),
    tokensDelivered: delivered,
    tokensExpected: spec.streams * spec.tokens,
    tokensLost: Math.max(0, spec.streams * spec.tokens - delivered),
    garbledStreams: garbled.length,
    errors: errors.length,
    firstError: errors[0]?.error ?? garbled[0]?.faults[0],
    tokensPerSecond: delivered / (timing.wallMs / 1000),
    wallMs: timing.wallMs,
    rampMs: timing.rampMs,
    loadgenCores: timing.cpuMs / timing.wallMs,
  };
}
