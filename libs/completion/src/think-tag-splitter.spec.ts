import fc from 'fast-check';
import { type SplitPiece, ThinkTagSplitter } from './think-tag-splitter';

function split(deltas: string[]): SplitPiece[] {
  const splitter = new ThinkTagSplitter();
  return [...deltas.flatMap((delta) => splitter.push(delta)), ...splitter.end()];
}

const joined = (pieces: SplitPiece[], kind: SplitPiece['kind']) =>
  pieces
    .filter((piece) => piece.kind === kind)
    .map((piece) => piece.text)
    .join('');

/** Cuts `text` at the given offsets (sorted, deduplicated) into consecutive deltas. */
function cut(text: string, offsets: number[]): string[] {
  const points = [...new Set(offsets.map((offset) => offset % (text.length + 1)))].sort((a, b) => a - b);
  const deltas: string[] = [];
  let from = 0;
  for (const point of points) {
    deltas.push(text.slice(from, point));
    from = point;
  }
  deltas.push(text.slice(from));
  return deltas;
}

describe('ThinkTagSplitter', () => {
  it('separates a leading think block from the answer, in order', () => {
    expect(split(['<think>', 'Let me see.', '</think>', '\n\nIt is 4.'])).toEqual([
      { kind: 'reasoning', text: 'Let me see.' },
      { kind: 'text', text: '\n\nIt is 4.' },
    ]);
  });

  it('finds tags split across deltas at every point, multi-byte text around them', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme' }).filter((value) => !value.includes('</think>')),
        fc.string({ unit: 'grapheme' }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (thought, answer, offsets) => {
          const pieces = split(cut(`  <think>${thought}</think>${answer}`, offsets));
          expect(joined(pieces, 'reasoning')).toBe(thought);
          expect(joined(pieces, 'text')).toBe(answer);
          // Reasoning first, then text: never back.
          const firstText = pieces.findIndex((piece) => piece.kind === 'text');
          if (firstText >= 0) {
            expect(pieces.slice(firstText).every((piece) => piece.kind === 'text')).toBe(true);
          }
        },
      ),
    );
  });

  it('leaves content that does not open with <think> untouched, even if it mentions the tag later', () => {
    const content = 'Use <think>…</think> tags like this.';
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 8 }), (offsets) => {
        const pieces = split(cut(content, offsets));
        expect(pieces.every((piece) => piece.kind === 'text')).toBe(true);
        expect(joined(pieces, 'text')).toBe(content);
      }),
    );
  });

  it('gives back held text when the content ends: a lone "<thi" is an answer, an unclosed think is reasoning', () => {
    expect(split(['  <thi'])).toEqual([{ kind: 'text', text: '  <thi' }]);
    expect(split(['<think>still thinking </thi'])).toEqual([
      { kind: 'reasoning', text: 'still thinking ' },
      { kind: 'reasoning', text: '</thi' },
    ]);
  });
});
