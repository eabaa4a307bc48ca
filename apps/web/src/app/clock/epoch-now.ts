/**
 * The client's clock in epoch ms with sub-millisecond resolution: the wall clock (`Date.now()`) read through
 * the monotonic `performance.now()`, anchored once at page load, the same code as the server's (`@app/clock`).
 * Every client-side timestamp (send, arrival, clock probes) comes from here, so that all of them share one
 * monotonic base, and the offset shown is between the two wall clocks, as a user would set or skew them.
 */
export { epochAt, epochNow } from '@app/clock';

/**
 * How far one `performance.now()` reading may be from the truth, as observed: the smallest step between
 * readings. Browsers clamp the timer (Chrome to 100 µs with jitter, to 5 µs when the page is cross-origin
 * isolated) and each clamped reading is within one step of the true time.
 */
export function measureTimerResolution(now: () => number = () => performance.now(), steps = 20): number {
  let smallest = Infinity;
  let previous = now();
  const deadline = previous + 5;
  for (let seen = 0; seen < steps;) {
    const reading = now();
    if (reading > previous) {
      smallest = Math.min(smallest, reading - previous);
      previous = reading;
      seen++;
    }
    if (reading > deadline) break;
  }
  return Number.isFinite(smallest) ? smallest : 1;
}

export const TIMER_RESOLUTION_MS = measureTimerResolution();
