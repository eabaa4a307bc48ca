import type { TransportName } from '../transport/completion-transport';
import type { RunMetrics } from '../metrics/run-metrics';
import { median } from '../metrics/percentiles';
import type { Lane } from '../run/lane';

export interface RaceSummary {
  /** The transport whose tokens arrived first, by the median per-token lead; null on a tie or without tokens. */
  ahead: TransportName | null;
  behind: TransportName | null;
  /** Median over the tokens both lanes received (matched by seq) of behind.arrival − ahead.arrival. */
  medianLeadMs: number;
  ttftLeadMs: number | null;
  /** Like `ttftLeadMs`, for the first reasoning token; null when the model did not reason. */
  ttfrLeadMs: number | null;
  transportDelayLeadMs: number | null;
  comparedTokens: number;
}

/**
 * Compares two lanes of one race. Both sent the identical request at the same moment, so with the simulator
 * they get the same token schedule and seq n carries the same token on both.
 */
export function summarizeRace(
  a: Lane,
  aMetrics: RunMetrics,
  b: Lane,
  bMetrics: RunMetrics,
): RaceSummary | null {
  const bBySeq = new Map(b.arrivals.map((arrival) => [arrival.seq, arrival.arrivedAt]));
  const leadsOfA: number[] = [];
  for (const arrival of a.arrivals) {
    const other = bBySeq.get(arrival.seq);
    if (other !== undefined) leadsOfA.push(other - arrival.arrivedAt);
  }
  const lead = median(leadsOfA);
  if (lead === null) return null;
  const [ahead, behind] = lead >= 0 ? [a, b] : [b, a];
  const sign = lead >= 0 ? 1 : -1;
  const difference = (x: number | null | undefined, y: number | null | undefined) =>
    x === null || x === undefined || y === null || y === undefined ? null : sign * (y - x);
  return {
    ahead: lead === 0 ? null : ahead.transport,
    behind: lead === 0 ? null : behind.transport,
    medianLeadMs: Math.abs(lead),
    ttftLeadMs: difference(aMetrics.ttftMs, bMetrics.ttftMs),
    ttfrLeadMs: difference(aMetrics.ttfrMs, bMetrics.ttfrMs),
    transportDelayLeadMs: difference(aMetrics.transportDelay?.p50, bMetrics.transportDelay?.p50),
    comparedTokens: leadsOfA.length,
  };
}
