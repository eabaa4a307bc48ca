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
 * isolated) and each clamped reading is within one step of the true time. A page preempted while it measures
 * (a busy machine, page load) sees one long step: it gives up only after a few steps, so that the smallest is a
 * real one (once, under a load average of 15, a 5 ms limit from the start kept a single 38 ms step, and every
 * bound was widened by it).
 */
export function measureTimerResolution(now: () => number = () => performance.now(), steps = 20): number {
  let smallest = Infinity;
  let previous = now();
  const start = previous;
  for (let seen = 0, reads = 0; seen < steps && reads < MAX_READS; reads++) {
    const reading = now();
    if (reading > previous) {
      smallest = Math.min(smallest, reading - previous);
      previous = reading;
      seen++;
    }
    // A timer so coarse that 20 steps take this long is not worth waiting for.
    if (reading - start > GIVE_UP_AFTER_MS && seen >= MIN_STEPS) break;
  }
  return Number.isFinite(smallest) ? smallest : 1;
}

const GIVE_UP_AFTER_MS = 50;
const MIN_STEPS = 3;
/** A timer that never moves (a test's fake) ends the loop too. */
const MAX_READS = 10_000_000;

export const TIMER_RESOLUTION_MS = measureTimerResolution();
