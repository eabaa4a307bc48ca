import { belowClockBound, type ClockOffset, transportDelay } from '../clock/clock-offset';
import type { Lane } from '../run/lane';
import { type Distribution, quantileSketch, summarize } from './percentiles';

export interface RunMetrics {
  /** From send to the first answer token's arrival, on the client's clock. */
  ttftMs: number | null;
  /** From send to the first reasoning token's arrival, when the model reasoned. */
  ttfrMs: number | null;
  /** How long the model thought: first reasoning arrival to first answer token (or to now, the end). */
  reasoningMs: number | null;
  /** Per token: arrival − server `ts`, corrected by the clock offset. */
  transportDelay: Distribution | null;
  /** A compact sketch of the transport delays, kept in the history for the CDF. */
  transportDelaySketch: number[];
  /** Between consecutive token arrivals. */
  gaps: Distribution | null;
  tokensPerSecond: number | null;
  /** From send to the terminal event (or to the latest arrival while streaming). */
  durationMs: number | null;
  tokens: number;
  eventsReceived: number;
  /** The clock estimate's likely error (the ± shown) and its hard bound (see `ClockOffset`). */
  clockUncertaintyMs: number | null;
  clockBoundMs: number | null;
  /** Tokens whose delay is below what any offset within the estimate's bounds allows (see `belowClockBound`). */
  delaysBelowClockBound: number;
}

/**
 * A lane resumed after a page reload has only its counts: its tokens were replayed in a burst, long after they
 * were produced, so TTFT, delays, gaps, rate and duration would measure the reload, not the transport.
 */
export function computeRunMetrics(lane: Lane, clock: ClockOffset | null): RunMetrics {
  if (lane.resumed) {
    return {
      ttftMs: null,
      ttfrMs: null,
      reasoningMs: null,
      transportDelay: null,
      transportDelaySketch: [],
      gaps: null,
      tokensPerSecond: null,
      durationMs: null,
      tokens: lane.arrivals.length,
      eventsReceived: lane.eventsReceived,
      clockUncertaintyMs: null,
      clockBoundMs: null,
      delaysBelowClockBound: 0,
    };
  }
  const { arrivals } = lane;
  const first = arrivals[0];
  const last = arrivals[arrivals.length - 1];
  const delays = clock ? arrivals.map((a) => transportDelay(a.arrivedAt, a.serverTs, clock)) : [];
  const gaps = arrivals.slice(1).map((a, i) => a.arrivedAt - arrivals[i].arrivedAt);
  const generationMs = first && last ? last.arrivedAt - first.arrivedAt : 0;
  const end = lane.endedAt ?? last?.arrivedAt ?? null;
  return {
    ttftMs: first ? first.arrivedAt - lane.sentAt : null,
    ttfrMs: lane.firstReasoningAt === null ? null : lane.firstReasoningAt - lane.sentAt,
    reasoningMs: thinkingTime(lane),
    transportDelay: summarize(delays),
    transportDelaySketch: quantileSketch(delays).map(round2),
    gaps: summarize(gaps),
    tokensPerSecond:
      arrivals.length > 1 && generationMs > 0 ? ((arrivals.length - 1) * 1000) / generationMs : null,
    durationMs: end === null ? null : end - lane.sentAt,
    tokens: arrivals.length,
    eventsReceived: lane.eventsReceived,
    clockUncertaintyMs: clock?.uncertaintyMs ?? null,
    clockBoundMs: clock?.boundMs ?? null,
    delaysBelowClockBound: clock ? delays.filter((delay) => belowClockBound(delay, clock)).length : 0,
  };
}

/** First reasoning to first answer token; while the model still thinks, to its latest word or its end. */
export function thinkingTime(lane: Lane): number | null {
  if (lane.firstReasoningAt === null) return null;
  const until = lane.arrivals[0]?.arrivedAt ?? lane.endedAt;
  return until === null || until === undefined ? null : until - lane.firstReasoningAt;
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
