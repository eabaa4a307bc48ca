/**
 * The client's clock in epoch ms with sub-millisecond resolution. Every client-side timestamp (send, arrival,
 * clock-offset round trips) comes from here, so that all of them share one monotonic base.
 */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}
