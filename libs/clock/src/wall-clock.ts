/**
 * The server's clock for every timestamp a client compares with its own (`ts` of events, `GET /api/time`):
 * the wall clock (what `Date.now()` says, so a skewed or NTP-disciplined system clock shows as it is), read
 * through the monotonic `performance.now()` for sub-millisecond resolution.
 *
 * `performance.timeOrigin + performance.now()` is not that clock: Node reads the wall clock for `timeOrigin`
 * at a different moment from the monotonic origin, and the sum is 0 to 2 ms off `Date.now()`, differently
 * in every process (measured on Node 24: −1.75, −1.09, −0.91, 0.00 ms in four starts). A client's
 * clock-offset estimate would carry that error into every transport delay. So the anchor between the two
 * clocks is measured once, at the edges where `Date.now()` ticks to the next millisecond.
 */
export function calibrateWallClock(
  wallNow: () => number = Date.now,
  monotonicNow: () => number = () => performance.now(),
  edges = 5,
  maxTries = 20,
): number {
  // Each edge bounds the anchor: the tick to `wall` came after the previous wall read (itself after
  // `previous`) and before this one (itself before `after`). A read delayed by preemption (a busy machine)
  // widens its window; the narrowest windows are kept.
  const windows: { lower: number; upper: number }[] = [];
  for (let attempt = 0; attempt < maxTries; attempt++) {
    let previous = monotonicNow();
    const start = wallNow();
    for (;;) {
      const before = monotonicNow();
      const wall = wallNow();
      const after = monotonicNow();
      if (wall !== start) {
        windows.push({ lower: wall - after, upper: wall - previous });
        break;
      }
      previous = before;
    }
    const clean = windows.filter((w) => w.upper - w.lower <= CLEAN_WINDOW_MS);
    if (clean.length >= edges) break;
  }
  windows.sort((a, b) => a.upper - a.lower - (b.upper - b.lower));
  const kept = windows.slice(0, edges);
  const lower = Math.max(...kept.map((w) => w.lower));
  const upper = Math.min(...kept.map((w) => w.upper));
  return lower <= upper ? (lower + upper) / 2 : (kept[0].lower + kept[0].upper) / 2;
}

/** A window this narrow was not interrupted: a few timer reads, or a browser's clamped 5 µs steps. */
const CLEAN_WINDOW_MS = 0.02;

/**
 * Linux slews CLOCK_MONOTONIC with the wall clock (NTP's frequency corrections apply to both), so the anchor
 * holds until the wall clock is stepped; a few milliseconds spent once at start-up.
 */
const anchor = calibrateWallClock();

/** Epoch milliseconds on the wall clock, with the monotonic clock's sub-microsecond resolution. */
export function epochNow(): number {
  return anchor + performance.now();
}

/** The wall-clock epoch ms of a `performance.now()`-based timestamp (a Resource Timing entry's, say). */
export function epochAt(monotonicMs: number): number {
  return anchor + monotonicMs;
}
