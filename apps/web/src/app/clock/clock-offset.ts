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
  /**
   * The estimate's standard uncertainty, the ± shown: `boundMs / √3`, the standard deviation of an offset
   * known only to lie somewhere within the bound. A statistical figure, not a guarantee: see `estimateClockOffset`.
   */
  uncertaintyMs: number;
  /**
   * Half the width of the interval the offset certainly lies in, given the probes kept, the timer resolution and
   * the drift allowed: what no path's asymmetry can take it out of. Delays are flagged against it.
   */
  boundMs: number;
  /** The smallest network round trip of the probes (the server's own time taken out). */
  rttMs: number;
  /** The probes the estimate rests on (those since the last clock step), and how many were offered. */
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
}

const DEFAULT_DRIFT_PPM = 5;

interface ProbeBounds {
  sample: ClockSample;
  lower: number;
  upper: number;
}

/**
 * NTP's four timestamps bound the offset exactly, whatever the asymmetry of the path: the request cannot have
 * arrived before it was sent, nor the answer before it left, so
 * `serverSentAt − clientReceivedAt ≤ offset ≤ serverReceivedAt − clientSentAt`, an interval as wide as the
 * probe's network round trip. Widened by the timer resolution and by the drift since the probe, every probe's
 * interval holds the true offset; so does their intersection, which is as narrow as the quickest trip out plus
 * the quickest trip back among all the probes: a slow probe cannot widen it, so every probe offered counts
 * (a busy machine leaves few quick trips; NTP's keep-the-best-8 filter is for estimates that a slow probe can
 * drag, which an intersection is not). The estimate is its middle; `boundMs` is half its width.
 *
 * The bound is a guarantee, and so it is wider than the error: the error is half the difference between the
 * quickest trip out and the quickest trip back, which the probes cannot see (measured on loopback: 0.3 to 0.6
 * of the bound, leaning positive, as a server stamps an arrival after waking up and parsing it and a departure
 * before writing it). The ± shown, `uncertaintyMs`, is therefore a statistical figure: the standard
 * uncertainty of a value known only to lie within ±bound, `bound / √3` (a rectangular distribution, GUM
 * 4.3.7). The clock suite measures both against a known skew.
 *
 * Intervals that do not meet mean a clock was stepped (or drifted faster than allowed) between the probes:
 * only the probes since the newest such disagreement count (`sinceLastStep`).
 */
export function estimateClockOffset(
  samples: readonly ClockSample[],
  options: ClockFilterOptions,
): ClockOffset | null {
  const offered = probeBounds(samples, options);
  const bounds = sinceLastStep(offered);
  if (bounds.length === 0) return null;
  const lower = Math.max(...bounds.map((b) => b.lower));
  const upper = Math.min(...bounds.map((b) => b.upper));
  const offsetMs = (lower + upper) / 2;
  const boundMs = (upper - lower) / 2;
  return {
    offsetMs,
    uncertaintyMs: boundMs / Math.sqrt(3),
    boundMs,
    rttMs: Math.min(...bounds.map(({ sample }) => networkRoundTrip(sample))),
    samples: bounds.length,
    probes: offered.length,
    measuredAt: Math.max(...bounds.map(({ sample }) => sample.clientReceivedAt)),
  };
}

/** The probes that still count: those no later probe contradicts (see `estimateClockOffset`). */
export function consistentSamples(
  samples: readonly ClockSample[],
  options: ClockFilterOptions,
): ClockSample[] {
  const counted = new Set(sinceLastStep(probeBounds(samples, options)).map(({ sample }) => sample));
  return samples.filter((sample) => counted.has(sample));
}

function probeBounds(
  samples: readonly ClockSample[],
  { now, resolutionMs, driftPpm = DEFAULT_DRIFT_PPM }: ClockFilterOptions,
): ProbeBounds[] {
  return samples
    .filter((s) => s.clientReceivedAt >= s.clientSentAt && s.serverSentAt >= s.serverReceivedAt)
    .map((sample) => {
      const slack = resolutionMs + (Math.max(0, now - sample.clientReceivedAt) * driftPpm) / 1e6;
      return {
        sample,
        lower: sample.serverSentAt - sample.clientReceivedAt - slack,
        upper: sample.serverReceivedAt - sample.clientSentAt + slack,
      };
    });
}

/** Newest first, the probes whose intervals all meet; the first older one that does not ends the run. */
function sinceLastStep(bounds: readonly ProbeBounds[]): ProbeBounds[] {
  const newestFirst = [...bounds].sort((a, b) => b.sample.clientReceivedAt - a.sample.clientReceivedAt);
  let lower = -Infinity;
  let upper = Infinity;
  const consistent: ProbeBounds[] = [];
  for (const probe of newestFirst) {
    lower = Math.max(lower, probe.lower);
    upper = Math.min(upper, probe.upper);
    if (lower > upper) break;
    consistent.push(probe);
  }
  return consistent;
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
  return delayMs < -clock.boundMs;
}

/** The `clock-offset` text: server minus client, ms, with the estimate's uncertainty, e.g. `2500.12 ± 0.08`. */
export function formatClockOffset(clock: ClockOffset): string {
  return `${clock.offsetMs.toFixed(2)} ± ${clock.uncertaintyMs.toFixed(2)}`;
}

/** The hard bound as shown (`clock-bound`), rounded up so that rounding never narrows it: `± 0.21`. */
export function formatClockBound(clock: ClockOffset): string {
  return `± ${(Math.ceil(clock.boundMs * 100 - 1e-9) / 100).toFixed(2)}`;
}
