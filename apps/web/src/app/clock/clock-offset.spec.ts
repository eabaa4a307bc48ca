import fc from 'fast-check';
import {
  belowClockBound,
  type ClockOffset,
  type ClockSample,
  estimateClockOffset,
  formatClockOffset,
  transportDelay,
} from './clock-offset';
import { measureTimerResolution } from './epoch-now';

const exact = { now: 1000, resolutionMs: 0, driftPpm: 0 };

/** A probe through a path taking `up` ms to the server and `down` back, with `serve` ms spent on the server. */
function probe(sentAt: number, offset: number, up: number, down: number, serve = 0.01): ClockSample {
  const serverReceivedAt = sentAt + up + offset;
  return {
    clientSentAt: sentAt,
    serverReceivedAt,
    serverSentAt: serverReceivedAt + serve,
    clientReceivedAt: sentAt + up + serve + down,
  };
}

describe('estimateClockOffset', () => {
  it('is null without usable probes', () => {
    expect(estimateClockOffset([], exact)).toBeNull();
    const backwards = { clientSentAt: 10, serverReceivedAt: 7, serverSentAt: 7, clientReceivedAt: 5 };
    expect(estimateClockOffset([backwards], exact)).toBeNull();
  });

  it('takes the server time out of the round trip (NTP four timestamps)', () => {
    // The server is 1000 ms ahead; 0.1 ms each way, 5 ms spent answering.
    const offset = estimateClockOffset([probe(100, 1000, 0.1, 0.1, 5)], exact);
    expect(offset?.offsetMs).toBeCloseTo(1000, 9);
    expect(offset?.uncertaintyMs).toBeCloseTo(0.1, 9);
    expect(offset?.rttMs).toBeCloseTo(0.2, 9);
  });

  it('keeps the probes with the least round trip and intersects their bounds', () => {
    const samples = [
      probe(0, -500, 20, 1), // slow and asymmetric: alone it would say −490.5
      probe(100, -500, 0.3, 0.1),
      probe(200, -500, 0.1, 0.3),
      probe(300, -500, 8, 0.2),
    ];
    const offset = estimateClockOffset(samples, { ...exact, keep: 2 });
    // Each kept probe's interval is 0.4 ms wide; together they leave −500 ± 0.1.
    expect(offset?.offsetMs).toBeCloseTo(-500, 9);
    expect(offset?.uncertaintyMs).toBeCloseTo(0.1, 9);
    expect(offset).toMatchObject({ samples: 2, probes: 4 });
  });

  it('handles a server clock behind the client', () => {
    expect(estimateClockOffset([probe(5000, -2000, 1, 1)], exact)?.offsetMs).toBeCloseTo(-2000, 9);
  });

  it('widens each probe by the timer resolution and by the drift since it was taken', () => {
    const sample = probe(0, 0, 0.1, 0.1, 0);
    const fresh = estimateClockOffset([sample], { now: 0.2, resolutionMs: 0.005, driftPpm: 15 });
    const old = estimateClockOffset([sample], { now: 60_000.2, resolutionMs: 0.005, driftPpm: 15 });
    expect(fresh?.uncertaintyMs).toBeCloseTo(0.105, 6);
    expect(old?.uncertaintyMs).toBeCloseTo(0.105 + 0.9, 6);
  });

  it('falls back to the best probe when the bounds do not meet (a clock was stepped)', () => {
    const offset = estimateClockOffset([probe(0, 0, 0.1, 0.1), probe(10, 50, 0.2, 0.2)], exact);
    expect(offset?.offsetMs).toBeCloseTo(0, 9);
    expect(offset?.uncertaintyMs).toBeCloseTo(0.1, 9);
  });

  it('always holds the true offset within its uncertainty, whatever the paths and the timer clamping', () => {
    fc.assert(
      fc.property(
        fc.double({ min: -5000, max: 5000, noNaN: true }),
        fc.array(
          fc.record({
            up: fc.double({ min: 0.01, max: 20, noNaN: true }),
            down: fc.double({ min: 0.01, max: 20, noNaN: true }),
            jitterSent: fc.double({ min: -0.1, max: 0.1, noNaN: true }),
            jitterReceived: fc.double({ min: -0.1, max: 0.1, noNaN: true }),
          }),
          { minLength: 1, maxLength: 40 },
        ),
        (truth, paths) => {
          // A clamped timer reads each client timestamp up to 0.1 ms away from the true time.
          const samples = paths.map(({ up, down, jitterSent, jitterReceived }, i) => {
            const exactProbe = probe(i * 100, truth, up, down);
            return {
              ...exactProbe,
              clientSentAt: exactProbe.clientSentAt + jitterSent,
              clientReceivedAt: Math.max(exactProbe.clientReceivedAt + jitterReceived, i * 100 + jitterSent),
            };
          });
          const offset = estimateClockOffset(samples, { now: paths.length * 100, resolutionMs: 0.1 });
          expect(offset).not.toBeNull();
          expect(Math.abs((offset as ClockOffset).offsetMs - truth)).toBeLessThanOrEqual(
            (offset as ClockOffset).uncertaintyMs + 1e-6,
          );
        },
      ),
    );
  });
});

const clock: ClockOffset = {
  offsetMs: 1000,
  uncertaintyMs: 0.08,
  rttMs: 0.2,
  samples: 8,
  probes: 16,
  measuredAt: 0,
};

describe('transportDelay', () => {
  it('corrects the server timestamp onto the client clock', () => {
    // Produced at server 2000 = client 1000; arrived at client 1003.
    expect(transportDelay(1003, 2000, clock)).toBe(3);
  });
});

describe('belowClockBound', () => {
  it('flags only delays that no offset within the bounds explains', () => {
    expect(belowClockBound(0.1, clock)).toBe(false);
    expect(belowClockBound(-0.05, clock)).toBe(false);
    expect(belowClockBound(-0.26, clock)).toBe(true);
  });
});

describe('formatClockOffset', () => {
  it('is server minus client in ms with its uncertainty, as the contract shows it', () => {
    expect(formatClockOffset({ ...clock, offsetMs: 2500.1234, uncertaintyMs: 0.0791 })).toBe(
      '2500.12 ± 0.08',
    );
    expect(formatClockOffset({ ...clock, offsetMs: -1300.004 })).toBe('-1300.00 ± 0.08');
  });
});

describe('measureTimerResolution', () => {
  it('is the smallest step of a clamped timer', () => {
    let t = 0;
    const clamped = () => Math.floor((t += 0.013) / 0.1) * 0.1;
    expect(measureTimerResolution(clamped)).toBeCloseTo(0.1, 9);
  });
});
