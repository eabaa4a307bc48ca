import fc from 'fast-check';
import {
  belowClockBound,
  type ClockOffset,
  type ClockSample,
  consistentSamples,
  estimateClockOffset,
  formatClockBound,
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
    expect(offset?.boundMs).toBeCloseTo(0.1, 9);
    expect(offset?.rttMs).toBeCloseTo(0.2, 9);
  });

  it("intersects every probe's bounds: slow and lopsided probes cannot widen them", () => {
    const samples = [
      probe(0, -500, 20, 1), // slow and asymmetric: alone it would say −490.5
      probe(100, -500, 0.3, 0.1),
      probe(200, -500, 0.1, 0.3),
      probe(300, -500, 8, 0.2),
    ];
    const offset = estimateClockOffset(samples, exact);
    // The quickest trip out (0.1 ms) and back (0.1 ms) leave −500 ± 0.1.
    expect(offset?.offsetMs).toBeCloseTo(-500, 9);
    expect(offset?.boundMs).toBeCloseTo(0.1, 9);
    expect(offset).toMatchObject({ samples: 4, probes: 4 });
  });

  it('handles a server clock behind the client', () => {
    expect(estimateClockOffset([probe(5000, -2000, 1, 1)], exact)?.offsetMs).toBeCloseTo(-2000, 9);
  });

  it('widens each probe by the timer resolution and by the drift since it was taken', () => {
    const sample = probe(0, 0, 0.1, 0.1, 0);
    const fresh = estimateClockOffset([sample], { now: 0.2, resolutionMs: 0.005, driftPpm: 15 });
    const old = estimateClockOffset([sample], { now: 60_000.2, resolutionMs: 0.005, driftPpm: 15 });
    expect(fresh?.boundMs).toBeCloseTo(0.105, 6);
    expect(old?.boundMs).toBeCloseTo(0.105 + 0.9, 6);
  });

  it('shows as its uncertainty the standard deviation of an offset anywhere within the bound', () => {
    const offset = estimateClockOffset([probe(0, 1000, 0.12, 0.08)], { ...exact, resolutionMs: 0.005 });
    expect(offset?.boundMs).toBeCloseTo(0.105, 9);
    expect(offset?.uncertaintyMs).toBeCloseTo(0.105 / Math.sqrt(3), 9);
  });

  it('after a clock step, counts only the probes since (the newest that all agree)', () => {
    const samples = [
      probe(0, 0, 0.1, 0.1),
      probe(10, 0, 0.1, 0.1),
      probe(20, 50, 0.2, 0.2),
      probe(30, 50, 0.1, 0.1),
    ];
    const offset = estimateClockOffset(samples, exact);
    expect(offset?.offsetMs).toBeCloseTo(50, 9);
    expect(offset).toMatchObject({ probes: 4, samples: 2 });
    expect(consistentSamples(samples, exact)).toEqual(samples.slice(2));
    expect(consistentSamples(samples.slice(0, 2), exact)).toEqual(samples.slice(0, 2));
  });

  it('always holds the true offset within its bound, whatever the paths and the timer clamping', () => {
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
          const { offsetMs, boundMs, uncertaintyMs } = offset as ClockOffset;
          expect(Math.abs(offsetMs - truth)).toBeLessThanOrEqual(boundMs + 1e-6);
          expect(uncertaintyMs).toBeLessThanOrEqual(boundMs + 1e-9);
        },
      ),
    );
  });
});

const clock: ClockOffset = {
  offsetMs: 1000,
  uncertaintyMs: 0.03,
  boundMs: 0.08,
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
    // Below the ± shown but within the bound: a delay close to 0, read through the estimate's error.
    expect(belowClockBound(-0.05, clock)).toBe(false);
    expect(belowClockBound(-0.09, clock)).toBe(true);
  });
});

describe('formatClockOffset', () => {
  it('is server minus client in ms with its uncertainty, as the contract shows it', () => {
    expect(formatClockOffset({ ...clock, offsetMs: 2500.1234, uncertaintyMs: 0.0791 })).toBe(
      '2500.12 ± 0.08',
    );
    expect(formatClockOffset({ ...clock, offsetMs: -1300.004 })).toBe('-1300.00 ± 0.03');
  });

  it('shows the bound rounded up, so that rounding never narrows it', () => {
    expect(formatClockBound({ ...clock, boundMs: 0.2101 })).toBe('± 0.22');
    expect(formatClockBound({ ...clock, boundMs: 0.21 })).toBe('± 0.21');
  });
});

describe('measureTimerResolution', () => {
  it('is the smallest step of a clamped timer', () => {
    let t = 0;
    const clamped = () => Math.floor((t += 0.013) / 0.1) * 0.1;
    expect(measureTimerResolution(clamped)).toBeCloseTo(0.1, 9);
  });

  it('is not fooled by a preemption while it measures', () => {
    // The first reading comes 38 ms late; the timer then steps by 5 µs.
    let t = 0;
    let reads = 0;
    const preempted = () => (reads++ === 1 ? (t += 38) : (t += 0.005));
    expect(measureTimerResolution(preempted)).toBeCloseTo(0.005, 9);
  });
});
