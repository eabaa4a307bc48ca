import type { RunMetrics } from '../metrics/run-metrics';
import type { Lane, RunStatus } from '../run/lane';
import type { TransportName } from '../transport/completion-transport';

/** One stream over one transport, as the history keeps it. A race leaves two records with the same `raceId`. */
export interface RunRecord {
  id: string;
  startedAt: string;
  transport: TransportName;
  raceId: string | null;
  model: string | null;
  prompt: string;
  status: RunStatus;
  errorCode: string | null;
  tokens: number;
  events: number;
  ttftMs: number | null;
  /** Time to the first reasoning event, for a model that thinks (absent in records from before it was kept). */
  ttfrMs?: number | null;
  transportDelayP50Ms: number | null;
  transportDelayP95Ms: number | null;
  gapP50Ms: number | null;
  gapP95Ms: number | null;
  gapMaxMs: number | null;
  tokensPerSecond: number | null;
  durationMs: number | null;
  clockUncertaintyMs: number | null;
  /** Picked up after a page reload: counts only, no latency figures (absent in records from before the flag). */
  resumed?: boolean;
  /** Up to 101 quantiles of the per-token transport delays: enough for a CDF without every sample. */
  transportDelaySketch: number[];
}

export const RECORD_COLUMNS = [
  'id',
  'startedAt',
  'transport',
  'raceId',
  'model',
  'prompt',
  'status',
  'errorCode',
  'tokens',
  'events',
  'ttftMs',
  'ttfrMs',
  'transportDelayP50Ms',
  'transportDelayP95Ms',
  'gapP50Ms',
  'gapP95Ms',
  'gapMaxMs',
  'tokensPerSecond',
  'durationMs',
  'clockUncertaintyMs',
  'resumed',
] as const satisfies readonly (keyof RunRecord)[];

export function toRunRecord(
  lane: Lane,
  metrics: RunMetrics,
  context: { raceId: string | null; prompt: string; model: string | null },
): RunRecord {
  return {
    id: lane.streamId,
    startedAt: new Date(lane.sentAt).toISOString(),
    transport: lane.transport,
    raceId: context.raceId,
    model: lane.model ?? context.model,
    prompt: context.prompt.slice(0, 200),
    status: lane.status,
    errorCode: lane.error?.code ?? null,
    tokens: metrics.tokens,
    events: metrics.eventsReceived,
    ttftMs: round(metrics.ttftMs),
    ttfrMs: round(metrics.ttfrMs),
    transportDelayP50Ms: round(metrics.transportDelay?.p50),
    transportDelayP95Ms: round(metrics.transportDelay?.p95),
    gapP50Ms: round(metrics.gaps?.p50),
    gapP95Ms: round(metrics.gaps?.p95),
    gapMaxMs: round(metrics.gaps?.max),
    tokensPerSecond: round(metrics.tokensPerSecond),
    durationMs: round(metrics.durationMs),
    clockUncertaintyMs: round(metrics.clockUncertaintyMs),
    resumed: lane.resumed,
    transportDelaySketch: metrics.transportDelaySketch,
  };
}

function round(value: number | null | undefined): number | null {
  return value === null || value === undefined ? null : Math.round(value * 100) / 100;
}
