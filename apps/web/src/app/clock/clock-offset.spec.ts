import { estimateClockOffset, transportDelay } from './clock-offset';

describe('estimateClockOffset', () => {
  it('is null without usable samples', () => {
    expect(estimateClockOffset([])).toBeNull();
    expect(estimateClockOffset([{ sentAt: 10, receivedAt: 5, serverTs: 7 }])).toBeNull();
  });

  it('takes the midpoint of the round trip', () => {
    // The server is 1000 ms ahead; the request took 4 ms each way.
    const offset = estimateClockOffset([{ sentAt: 100, receivedAt: 108, serverTs: 1104 }]);
    expect(offset).toEqual({ offsetMs: 1000, uncertaintyMs: 4, rttMs: 8, samples: 1, measuredAt: 108 });
  });

  it('picks the sample with the smallest round trip', () => {
    const offset = estimateClockOffset([
      { sentAt: 0, receivedAt: 50, serverTs: -460 }, // slow, asymmetric: would say -485
      { sentAt: 100, receivedAt: 102, serverTs: -399 }, // fast: -500
      { sentAt: 200, receivedAt: 220, serverTs: -290 }, // -500 with a wider bound
    ]);
    expect(offset?.offsetMs).toBe(-500);
    expect(offset?.uncertaintyMs).toBe(1);
    expect(offset?.samples).toBe(3);
  });

  it('handles a server clock behind the client', () => {
    expect(estimateClockOffset([{ sentAt: 5000, receivedAt: 5002, serverTs: 3001 }])?.offsetMs).toBe(-2000);
  });
});

describe('transportDelay', () => {
  it('corrects the server timestamp onto the client clock', () => {
    const clock = { offsetMs: 1000, uncertaintyMs: 1, rttMs: 2, samples: 1, measuredAt: 0 };
    // Produced at server 2000 = client 1000; arrived at client 1003.
    expect(transportDelay(1003, 2000, clock)).toBe(3);
  });
});
