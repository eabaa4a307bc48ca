/** One `GET /api/time` round trip, all in epoch ms: the client's clock at send and receipt, the server's in between. */
export interface ClockSample {
  sentAt: number;
  receivedAt: number;
  serverTs: number;
}

/** How far the server's clock is ahead of the client's: serverClock = clientClock + offsetMs (± uncertaintyMs). */
export interface ClockOffset {
  offsetMs: number;
  uncertaintyMs: number;
  rttMs: number;
  samples: number;
  measuredAt: number;
}

/**
 * NTP-style estimate: each sample's offset is `serverTs − (sentAt + receivedAt) / 2`, exact when the request and
 * the response took equally long. The sample with the smallest round trip bounds the asymmetry best, so it wins;
 * its error is at most half its round trip.
 */
export function estimateClockOffset(samples: readonly ClockSample[]): ClockOffset | null {
  const valid = samples.filter((sample) => sample.receivedAt >= sample.sentAt);
  if (valid.length === 0) return null;
  const best = valid.reduce((a, b) => (b.receivedAt - b.sentAt < a.receivedAt - a.sentAt ? b : a));
  const rttMs = best.receivedAt - best.sentAt;
  return {
    offsetMs: best.serverTs - (best.sentAt + best.receivedAt) / 2,
    uncertaintyMs: rttMs / 2,
    rttMs,
    samples: valid.length,
    measuredAt: best.receivedAt,
  };
}

/** The transport's share of a token's latency: when it arrived, minus when the server produced it (on our clock). */
export function transportDelay(arrivedAt: number, serverTs: number, clock: ClockOffset): number {
  return arrivedAt - (serverTs - clock.offsetMs);
}
