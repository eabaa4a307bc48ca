import type { RunRecord } from '../history/run-record';
import { median, percentile, sortAscending } from '../metrics/percentiles';
import { TRANSPORT_NAMES, type TransportName } from '../transport/completion-transport';

export interface TransportAggregate {
  transport: TransportName;
  runs: number;
  completed: number;
  medianTtftMs: number | null;
  /** Pooled over every run's delay sketch, each run weighing the same. */
  transportDelayP50Ms: number | null;
  transportDelayP95Ms: number | null;
  medianTokensPerSecond: number | null;
  /** The pooled delays, for the CDF. */
  delays: number[];
}

export function aggregateByTransport(records: readonly RunRecord[]): TransportAggregate[] {
  return TRANSPORT_NAMES.map((transport) => {
    const runs = records.filter((record) => record.transport === transport);
    const completed = runs.filter((record) => record.status === 'done');
    const delays = sortAscending(runs.flatMap((record) => record.transportDelaySketch ?? []));
    return {
      transport,
      runs: runs.length,
      completed: completed.length,
      medianTtftMs: median(present(runs.map((record) => record.ttftMs))),
      transportDelayP50Ms: percentile(delays, 50),
      transportDelayP95Ms: percentile(delays, 95),
      medianTokensPerSecond: median(present(completed.map((record) => record.tokensPerSecond))),
      delays,
    };
  });
}

function present(values: (number | null)[]): number[] {
  return values.filter((value): value is number => value !== null);
}
