const importTokenizer = () => import('gpt-tokenizer');
type Tokenizer = Awaited<ReturnType<typeof importTokenizer>>;

/**
 * The tokenizer is loaded when a simulator starts, not when the bundle loads: its o200k ranks cost about 45 MB of
 * RSS and 300 ms at start, which a gateway pointed at a real upstream never needs.
 */
let tokenizer: Tokenizer | undefined;

export async function loadTokenizer(): Promise<void> {
  tokenizer ??= await importTokenizer();
}

function loadedTokenizer(): Tokenizer {
  if (!tokenizer) throw new Error('the simulator tokenizer is not loaded: await loadTokenizer() first');
  return tokenizer;
}

/** One content delta: the text of one BPE token, or of a few when a character spans token boundaries. */
export interface TokenPiece {
  readonly text: string;
  /** `JSON.stringify(text)`, computed once so that emitting a chunk is string concatenation only. */
  readonly json: string;
  /** How many BPE tokens the piece stands for (usually 1); usage counts these. */
  readonly tokens: number;
}

/** User text is data here, never control tokens: `<|endoftext|>` in a prompt is just characters. */
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

/**
 * Splits text the way o200k_base (GPT-4o and later) would stream it. `decodeGenerator` holds bytes back until
 * they form whole characters; counting how many tokens it pulled per yielded string tells which tokens were
 * merged, so no delta ever carries half of a multi-byte character and the pieces concatenate to the text.
 */
export function splitIntoPieces(text: string): TokenPiece[] {
  const { encode, decodeGenerator } = loadedTokenizer();
  const tokens = encode(text, PLAIN_TEXT);
  let pulled = 0;
  function* counted(): Generator<number> {
    for (const token of tokens) {
      pulled++;
      yield token;
    }
  }
  const pieces: TokenPiece[] = [];
  let accounted = 0;
  for (const piece of decodeGenerator(counted())) {
    pieces.push({ text: piece, json: JSON.stringify(piece), tokens: pulled - accounted });
    accounted = pulled;
  }
  return pieces;
}

export function countTextTokens(text: string): number {
  return loadedTokenizer().countTokens(text, PLAIN_TEXT);
}
