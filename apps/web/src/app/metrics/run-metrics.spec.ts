import { newLane, type Lane } from '../run/lane';
import { computeRunMetrics } from './run-metrics';

const clock = {
  offsetMs: 1000,
  uncertaintyMs: 0.2,
  boundMs: 0.5,
  rttMs: 1,
  samples: 5,
  measuredAt: 0,
  probes: 1,
};

function laneWith(arrivals: [number, number][], endedAt: number | null = null): Lane {
  return {
    ...newLane('socket.io', 'stream-1', 100),
    arrivals: arrivals.map(([arrivedAt, serverTs], i) => ({ seq: i + 1, arrivedAt, serverTs })),
    eventsReceived: arrivals.length + 1,
    endedAt,
  };
}

describe('computeRunMetrics', () => {
  it('is empty before the first token', () => {
    const metrics = computeRunMetrics(newLane('sse', 's', 100), clock);
    expect(metrics).toMatchObject({
      ttftMs: null,
      transportDelay: null,
      gaps: null,
      tokensPerSecond: null,
      durationMs: null,
    });
  });

  it('separates the time to the first reasoning token from the time to the first answer token', () => {
    const thinking = { ...laneWith([]), firstReasoningAt: 130 };
    expect(computeRunMetrics(thinking, clock)).toMatchObject({ ttfrMs: 30, ttftMs: null, reasoningMs: null });
    const answering = { ...laneWith([[450, 1448]]), firstReasoningAt: 130 };
    expect(computeRunMetrics(answering, clock)).toMatchObject({ ttfrMs: 30, ttftMs: 350, reasoningMs: 320 });
    expect(computeRunMetrics(laneWith([[150, 1148]]), clock)).toMatchObject({
      ttfrMs: null,
      reasoningMs: null,
    });
  });

  it('measures ttft, delays, gaps, rate and duration', () => {
    // Server clock = client + 1000; each token produced 2 ms (then 4 ms) before it arrived.
    const lane = laneWith(
      [
        [150, 1148],
        [160, 1158],
        [180, 1176],
      ],
      200,
    );
    const metrics = computeRunMetrics(lane, clock);
    expect(metrics.ttftMs).toBe(50);
    expect(metrics.transportDelay).toMatchObject({ count: 3, p50: 2, max: 4 });
    expect(metrics.transportDelaySketch).toEqual([2, 2, 4]);
    expect(metrics.gaps).toMatchObject({ count: 2, p50: 15, max: 20 });
    expect(metrics.tokensPerSecond).toBeCloseTo(2000 / 30);
    expect(metrics.durationMs).toBe(100);
    expect(metrics).toMatchObject({
      tokens: 3,
      eventsReceived: 4,
      clockUncertaintyMs: 0.2,
      clockBoundMs: 0.5,
      delaysBelowClockBound: 0,
    });
  });

  it('counts the delays no offset within the bound explains, not those merely below the ± shown', () => {
    // Delays of −0.3 ms (within the 0.5 ms bound), −0.6 and −2 ms (impossible: flagged), and 1 ms.
    const lane = laneWith([
      [150, 1150.3],
      [160, 1160.6],
      [170, 1172],
      [180, 1179],
    ]);
    expect(computeRunMetrics(lane, clock).delaysBelowClockBound).toBe(2);
  });

  it('leaves transport delay unknown without a clock estimate', () => {
    const metrics = computeRunMetrics(laneWith([[150, 1148]]), null);
    expect(metrics.transportDelay).toBeNull();
    expect(metrics.durationMs).toBe(50);
  });
});
