import { modelAllowed, nestedDeeperThan } from './request-policy';

describe('nestedDeeperThan', () => {
  const nested = (depth: number): unknown => JSON.parse('['.repeat(depth) + ']'.repeat(depth));

  it('counts arrays and objects, the body itself as depth 1', () => {
    expect(nestedDeeperThan(nested(64), 64)).toBe(false);
    expect(nestedDeeperThan(nested(65), 64)).toBe(true);
    expect(nestedDeeperThan({ a: { b: [{ c: 1 }] } }, 4)).toBe(false);
    expect(nestedDeeperThan({ a: { b: [{ c: {} }] } }, 4)).toBe(true);
    expect(nestedDeeperThan('text', 0)).toBe(false);
  });

  it('walks 100,000 levels without overflowing the stack', () => {
    expect(nestedDeeperThan(nested(100_000), 64)).toBe(true);
    expect(nestedDeeperThan(nested(100_000), 200_000)).toBe(false);
  });
});

describe('modelAllowed', () => {
  it('allows what every list present allows; an absent list allows everything', () => {
    expect(modelAllowed('a')).toBe(true);
    expect(modelAllowed('a', undefined, undefined)).toBe(true);
    expect(modelAllowed('a', ['a', 'b'], undefined)).toBe(true);
    expect(modelAllowed('a', ['a', 'b'], ['b'])).toBe(false);
    expect(modelAllowed('b', ['a', 'b'], ['b'])).toBe(true);
    expect(modelAllowed('A', ['a'])).toBe(false);
    expect(modelAllowed('a', [])).toBe(false);
  });
});
