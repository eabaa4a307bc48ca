import { cdfPoints, median, percentile, quantileSketch, summarize } from './percentiles';

describe('percentile', () => {
  it('is null without values', () => {
    expect(percentile([], 50)).toBeNull();
  });

  it('returns the only value for any p', () => {
    expect(percentile([7], 0)).toBe(7);
    expect(percentile([7], 95)).toBe(7);
  });

  it('interpolates between closest ranks (R-7)', () => {
    const sorted = [1, 2, 3, 4];
    expect(percentile(sorted, 50)).toBe(2.5);
    expect(percentile(sorted, 0)).toBe(1);
    expect(percentile(sorted, 100)).toBe(4);
    expect(percentile(sorted, 95)).toBeCloseTo(3.85);
  });

  it('clamps p into 0..100', () => {
    expect(percentile([1, 2], -5)).toBe(1);
    expect(percentile([1, 2], 500)).toBe(2);
  });
});

describe('median', () => {
  it('does not need sorted input and does not mutate it', () => {
    const values = [9, 1, 5];
    expect(median(values)).toBe(5);
    expect(values).toEqual([9, 1, 5]);
  });
});

describe('summarize', () => {
  it('is null without values', () => {
    expect(summarize([])).toBeNull();
  });

  it('describes 1..100', () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(summarize(values)).toEqual({
      count: 100,
      min: 1,
      p50: 50.5,
      p95: expect.closeTo(95.05),
      max: 100,
      mean: 50.5,
    });
  });
});

describe('quantileSketch', () => {
  it('keeps small samples whole and sorted', () => {
    expect(quantileSketch([3, 1, 2])).toEqual([1, 2, 3]);
  });

  it('reduces large samples to evenly spaced quantiles', () => {
    const values = Array.from({ length: 1001 }, (_, i) => i);
    const sketch = quantileSketch(values, 11);
    expect(sketch).toEqual([0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]);
  });
});

describe('cdfPoints', () => {
  it('rises to 1 over the sorted values', () => {
    expect(cdfPoints([2, 1])).toEqual([
      { x: 1, y: 0.5 },
      { x: 2, y: 1 },
    ]);
  });
});
