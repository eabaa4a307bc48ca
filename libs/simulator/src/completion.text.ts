import { ProseGenerator } from './prose.generator';
import { between, seededRandom } from './seeded.random';
import { splitIntoPieces, type TokenPiece } from './token.splitter';

const DEFAULT_LENGTH = { min: 60, max: 200 } as const;
/** Rough characters per token of the generated prose; only decides when to stop adding blocks. */
const CHARS_PER_TOKEN = 4;
/** Many requests (every benchmark stream, every retry) share a seed; tokenizing once per seed is the big saving. */
const CACHE_SIZE = 256;
const cache = new Map<string, readonly TokenPiece[]>();

/**
 * The pieces of the generated answer for a seed. Without `tokens`, its length is drawn from the seed and it ends
 * at the end of a Markdown block; with `tokens`, it is cut at exactly that many pieces.
 */
export function generatedPieces(seed: number, tokens?: number): readonly TokenPiece[] {
  const key = `${seed}:${tokens ?? ''}`;
  const cached = cache.get(key);
  if (cached) {
    // Map keeps insertion order: re-inserting marks the entry as the most recently used.
    cache.delete(key);
    cache.set(key, cached);
    return cached;
  }
  const pieces = compose(seed, tokens);
  cache.set(key, pieces);
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value as string);
  return pieces;
}

function compose(seed: number, tokens: number | undefined): readonly TokenPiece[] {
  const random = seededRandom(seed);
  const target = tokens ?? between(random, DEFAULT_LENGTH.min, DEFAULT_LENGTH.max);
  const prose = new ProseGenerator(random);
  const blocks: string[] = [];
  let estimate = 0;
  for (;;) {
    while (estimate < target) {
      const block = prose.nextBlock();
      blocks.push(block);
      estimate += Math.ceil(block.length / CHARS_PER_TOKEN) + 1;
    }
    const pieces = splitIntoPieces(blocks.join('\n\n'));
    if (tokens === undefined) return pieces;
    if (pieces.length >= tokens) return pieces.slice(0, tokens);
    estimate = pieces.length;
  }
}

export function echoPieces(text: string): readonly TokenPiece[] {
  return splitIntoPieces(text);
}
