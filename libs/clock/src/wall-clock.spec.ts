import { calibrateWallClock, epochNow } from './wall-clock';

describe('calibrateWallClock', () => {
  it('finds the anchor at the millisecond edges of the wall clock', () => {
    // A monotonic clock advancing 1 µs per read; the wall clock is it plus 1234.5678 ms, floored like Date.now().
    let monotonic = 0;
    const monotonicNow = () => (monotonic += 0.001);
    const wallNow = () => Math.floor(monotonic + 1234.5678);
    expect(calibrateWallClock(wallNow, monotonicNow)).toBeCloseTo(1234.5678, 2);
  });

  it('keeps the edges no preemption widened', () => {
    // Every other edge, the read after the tick comes 0.7 ms late (the thread was preempted).
    let monotonic = 0;
    let reads = 0;
    const monotonicNow = () => {
      reads++;
      monotonic += reads % 2000 < 1000 && (monotonic + 1234.5678) % 1 > 0.99 ? 0.7 : 0.001;
      return monotonic;
    };
    const wallNow = () => Math.floor(monotonic + 1234.5678);
    expect(calibrateWallClock(wallNow, monotonicNow)).toBeCloseTo(1234.5678, 2);
  });

  it('agrees with Date.now() on this process', () => {
    const before = Date.now();
    const now = epochNow();
    const after = Date.now() + 1;
    expect(now).toBeGreaterThanOrEqual(before - 0.01);
    expect(now).toBeLessThanOrEqual(after + 0.01);
  });
});
