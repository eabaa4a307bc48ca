/** A distribution of one measured quantity, in the unit of its samples. */
export interface Distribution {
  count: number;
  min: number;
  p50: number;
  p95: number;
  max: number;
  mean: number;
}

/**
 * The p-th percentile (0..100) of ascending-sorted values, interpolating linearly between the closest ranks
 * (the "R-7" definition spreadsheets and NumPy use by default). `null` when there are no values.
 */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const clamped = Math.min(100, Math.max(0, p));
  const rank = (clamped / 100) * (sorted.length - 1);
  const lower = Math.floor(rank);
  const upper = Math.ceil(rank);
  return sorted[lower] + (sorted[upper] - sorted[lower]) * (rank - lower);
}

export function median(values: readonly number[]): number | null {
  return percentile(sortAscending(values), 50);
}

export function sortAscending(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

export function summarize(values: readonly number[]): Distribution | null {
  if (values.length === 0) return null;
  const sorted = sortAscending(values);
  const total = sorted.reduce((sum, value) => sum + value, 0);
  return {
    count: sorted.length,
    min: sorted[0],
    p50: percentile(sorted, 50) ?? 0,
    p95: percentile(sorted, 95) ?? 0,
    max: sorted[sorted.length - 1],
    mean: total / sorted.length,
  };
}

/** `count` evenly spaced quantiles (p0 .. p100): a compact, mergeable sketch of a distribution. */
export function quantileSketch(values: readonly number[], count = 101): number[] {
  if (values.length === 0) return [];
  const sorted = sortAscending(values);
  if (sorted.length <= count) return sorted;
  return Array.from({ length: count }, (_, i) => percentile(sorted, (i / (count - 1)) * 100) ?? 0);
}

/** Points of the empirical cumulative distribution function: x ascending, y the fraction of values <= x. */
export function cdfPoints(values: readonly number[]): { x: number; y: number }[] {
  const sorted = sortAscending(values);
  return sorted.map((x, i) => ({ x, y: (i + 1) / sorted.length }));
}
