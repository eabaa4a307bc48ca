import { type CompletionEvent, isTerminalEvent } from '@app/contracts';
import { textOf } from './sse-client';

/** A small seeded generator, so that a failing run can be replayed with the same choices (each suite's *_SEED). */
export function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** Every event once, in order, from 0 to the terminal one, and the exact text; says what was seen otherwise. */
export function expectWhole(events: CompletionEvent[], expected: string): void {
  const seen = events.map((event) => `${event.seq}:${event.type}`).join(' ');
  expect({ seqs: events.map((event) => event.seq), seen }).toEqual({
    seqs: events.map((_, index) => index),
    seen,
  });
  expect(events.filter(isTerminalEvent)).toHaveLength(1);
  expect(events.at(-1)?.type).toBe('done');
  expect(textOf(events)).toBe(expected);
}
