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
): number {
  const anchors: number[] = [];
  for (let edge = 0; edge < edges; edge++) {
    const start = wallNow();
    let before = monotonicNow();
    for (;;) {
      const at = monotonicNow();
      const wall = wallNow();
      if (wall !== start) {
        // The tick to `wall` happened between the previous read and this one.
        anchors.push(wall - (before + at) / 2);
        break;
      }
      before = at;
    }
  }
  anchors.sort((a, b) => a - b);
  return anchors[Math.floor(anchors.length / 2)];
}

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
