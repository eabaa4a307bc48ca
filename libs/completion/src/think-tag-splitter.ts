export interface SplitPiece {
  kind: 'reasoning' | 'text';
  text: string;
}

const OPEN = '<think>';
const CLOSE = '</think>';

/**
 * Separates a `<think>…</think>` block at the start of a model's content from its answer, for models that inline
 * their reasoning (DeepSeek R1 and Qwen3 behind servers without a reasoning parser). Only a block that opens the
 * content counts (leading whitespace aside): an answer that talks about `<think>` later is left alone. Tags may be
 * split across deltas, so text that could be the start of a tag is held back until the next delta (or `end`)
 * decides; the pieces put back together are the content exactly, minus the two tags and the whitespace before the first.
 */
export class ThinkTagSplitter {
  private state: 'opening' | 'thinking' | 'answering' = 'opening';
  private held = '';

  push(delta: string): SplitPiece[] {
    const pieces: SplitPiece[] = [];
    let text = this.held + delta;
    this.held = '';
    if (this.state === 'opening') {
      const start = text.trimStart();
      if (start.startsWith(OPEN)) {
        this.state = 'thinking';
        text = start.slice(OPEN.length);
      } else if (OPEN.startsWith(start)) {
        // Only whitespace, or a beginning of `<think>`, so far: wait for more.
        this.held = text;
        return pieces;
      } else {
        this.state = 'answering';
      }
    }
    if (this.state === 'thinking') {
      const close = text.indexOf(CLOSE);
      if (close < 0) {
        const keep = partialTagLength(text, CLOSE);
        this.held = text.slice(text.length - keep);
        add(pieces, 'reasoning', text.slice(0, text.length - keep));
        return pieces;
      }
      add(pieces, 'reasoning', text.slice(0, close));
      this.state = 'answering';
      text = text.slice(close + CLOSE.length);
    }
    add(pieces, 'text', text);
    return pieces;
  }

  /** What was held back when the content ends: a tag that never completed is text after all. */
  end(): SplitPiece[] {
    const pieces: SplitPiece[] = [];
    add(pieces, this.state === 'thinking' ? 'reasoning' : 'text', this.held);
    this.held = '';
    return pieces;
  }
}

function add(pieces: SplitPiece[], kind: SplitPiece['kind'], text: string): void {
  if (text !== '') {
    pieces.push({ kind, text });
  }
}

/** How many characters at the end of `text` are the beginning of `tag`. */
function partialTagLength(text: string, tag: string): number {
  for (let length = Math.min(tag.length - 1, text.length); length > 0; length--) {
    if (text.endsWith(tag.slice(0, length))) {
      return length;
    }
  }
  return 0;
}
