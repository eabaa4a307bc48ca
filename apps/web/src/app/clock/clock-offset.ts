/**
 * One clock probe (`GET /api/time`, or `clock:probe` over the socket): NTP's four timestamps, epoch ms. The client
 * sent it at `clientSentAt` and had the answer at `clientReceivedAt` (its clock); the server had it at
 * `serverReceivedAt` and answered at `serverSentAt` (its clock).
 */
export interface ClockSample {
  clientSentAt: number;
  serverReceivedAt: number;
  serverSentAt: number;
  clientReceivedAt: number;
}

/** How far the server's clock is ahead of the client's: serverClock = clientClock + offsetMs (± uncertaintyMs). */
export interface ClockOffset {
  offsetMs: number;
  /** Half the width of the interval the offset certainly lies in, given the probes kept and the timer resolution. */
  uncertaintyMs: number;
  /** The smallest network round trip of the probes (the server's own time taken out). */
  rttMs: number;
  /** The probes the estimate rests on (the clock filter's survivors), and how many were offered. */
  samples: number;
  probes: number;
  /** When the newest probe kept came back, on the client's clock. */
  measuredAt: number;
}

export interface ClockFilterOptions {
  /** The client's clock now: a probe's bounds widen with its age (drift). */
  now: number;
  /** The client timer's resolution: each of its two readings may be off by this much. */
  resolutionMs: number;
  /**
   * How fast the two clocks may drift apart, in parts per million. NTP allows 15 for an undisciplined crystal;
   * two NTP-disciplined clocks stay within a few, and one machine's two clocks within none.
   */
  driftPpm?: number;
  /** How many of the tightest probes the estimate keeps. */
  keep?: number;
}

const DEFAULT_DRIFT_PPM = 5;
const DEFAULT_KEEP = 8;

/**
 * NTP's four timestamps bound the offset exactly, whatever the asymmetry of the path: the request cannot have
 * arrived before it was sent, nor the answer before it left, so
 * `serverSentAt − clientReceivedAt ≤ offset ≤ serverReceivedAt − clientSentAt`, an interval as wide as the
 * probe's network round trip. Widened by the timer resolution and by the drift since the probe, every probe's
 * interval holds the true offset; so does their intersection. The clock filter keeps the probes with the
 * narrowest intervals (the least round trip, the freshest), and the estimate is the middle of what they all
 * allow: its uncertainty is half that width, never more than half the best round trip and often much less.
 * If the intervals do not meet (the client's or the server's clock was stepped), only the best probe counts.
 */
export function estimateClockOffset(
  samples: readonly ClockSample[],
  { now, resolutionMs, driftPpm = DEFAULT_DRIFT_PPM, keep = DEFAULT_KEEP }: ClockFilterOptions,
): ClockOffset | null {
  const bounds = samples
    .filter((s) => s.clientReceivedAt >= s.clientSentAt && s.serverSentAt >= s.serverReceivedAt)
    .map((sample) => {
      const slack = resolutionMs + (Math.max(0, now - sample.clientReceivedAt) * driftPpm) / 1e6;
      return {
        sample,
        lower: sample.serverSentAt - sample.clientReceivedAt - slack,
        upper: sample.serverReceivedAt - sample.clientSentAt + slack,
      };
    })
    .sort((a, b) => a.upper - a.lower - (b.upper - b.lower));
  if (bounds.length === 0) return null;
  const kept = bounds.slice(0, keep);
  let lower = Math.max(...kept.map((b) => b.lower));
  let upper = Math.min(...kept.map((b) => b.upper));
  if (lower > upper) ({ lower, upper } = kept[0]);
  return {
    offsetMs: (lower + upper) / 2,
    uncertaintyMs: (upper - lower) / 2,
    rttMs: Math.min(...kept.map(({ sample }) => networkRoundTrip(sample))),
    samples: kept.length,
    probes: bounds.length,
    measuredAt: Math.max(...kept.map(({ sample }) => sample.clientReceivedAt)),
  };
}

function networkRoundTrip(sample: ClockSample): number {
  return sample.clientReceivedAt - sample.clientSentAt - (sample.serverSentAt - sample.serverReceivedAt);
}

/** The transport's share of a token's latency: when it arrived, minus when the server produced it (on our clock). */
export function transportDelay(arrivedAt: number, serverTs: number, clock: ClockOffset): number {
  return arrivedAt - (serverTs - clock.offsetMs);
}

/**
 * A delay no clock within the estimate's bounds can explain: even with the offset at the far end of its
 * interval, the token would have arrived before it was produced. It says the estimate is stale or wrong, not
 * that the transport was fast; it is flagged, never shown as a plain negative number.
 */
export function belowClockBound(delayMs: number, clock: ClockOffset): boolean {
  return delayMs < -clock.uncertaintyMs;
}

/** The `clock-offset` text: server minus client, ms, e.g. `2500.12 ± 0.08`. */
export function formatClockOffset(clock: ClockOffset): string {
  return `${clock.offsetMs.toFixed(2)} ± ${clock.uncertaintyMs.toFixed(2)}`;
}
