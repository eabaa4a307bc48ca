import type { StreamLimits } from './streams.constants';

/**
 * Clients following streams now, per stream and per limit key: the listener caps
 * (`RATE_LIMIT_LISTENERS_PER_STREAM`, `RATE_LIMIT_LISTENERS_PER_PRINCIPAL`) of one process.
 * Counts are kept only while positive, so the maps hold present streams and principals only.
 */
export class ListenerCounts {
  private readonly byStream = new Map<string, number>();
  private readonly byLimitKey = new Map<string, number>();

  constructor(private readonly limits: StreamLimits) {}

  /** Listeners of the stream with key `streamKey` now. */
  of(streamKey: string): number {
    return this.byStream.get(streamKey) ?? 0;
  }

  /** Which cap one more listener would pass, if any. */
  refusal(
    streamKey: string,
    limitKey: string,
  ): 'listeners_per_stream' | 'listeners_per_principal' | undefined {
    if (this.of(streamKey) >= this.limits.maxListenersPerStream) {
      return 'listeners_per_stream';
    }
    if ((this.byLimitKey.get(limitKey) ?? 0) >= this.limits.maxListenersPerPrincipal) {
      return 'listeners_per_principal';
    }
    return undefined;
  }

  /** Counts one listener in; the returned function counts it out, once however often it is called. */
  join(streamKey: string, limitKey: string): () => void {
    adjust(this.byStream, streamKey, +1);
    adjust(this.byLimitKey, limitKey, +1);
    let present = true;
    return () => {
      if (present) {
        present = false;
        adjust(this.byStream, streamKey, -1);
        adjust(this.byLimitKey, limitKey, -1);
      }
    };
  }
}

function adjust(counts: Map<string, number>, key: string, by: 1 | -1): void {
  const next = (counts.get(key) ?? 0) + by;
  if (next > 0) {
    counts.set(key, next);
  } else {
    counts.delete(key);
  }
}
