import type { TokenPiece } from './token.splitter';

/** The two ways real servers take "go on from this text": vLLM/SGLang/llama.cpp's, and DeepSeek/Mistral's. */
export type ContinuationForm = 'continue_final_message' | 'prefix';

/**
 * The rest of an answer after `prefix` has been delivered, as the deltas still to send. `prefix` must be a prefix
 * of the pieces' text (the caller checks); a piece the prefix ends inside is sent from there on as one delta, so
 * the text so far and the deltas concatenate to the uninterrupted answer, whatever the cut (inside a token, between
 * the two halves of a character the tokenizer split).
 */
export function remainingPieces(
  pieces: readonly TokenPiece[],
  prefixLength: number,
  countTokens: (text: string) => number,
): TokenPiece[] {
  let start = 0;
  for (let i = 0; i < pieces.length; i++) {
    const end = start + pieces[i].text.length;
    if (end > prefixLength) {
      const rest = pieces.slice(i + 1);
      if (start === prefixLength) return [pieces[i], ...rest];
      const text = pieces[i].text.slice(prefixLength - start);
      return [{ text, json: JSON.stringify(text), tokens: Math.max(1, countTokens(text)) }, ...rest];
    }
    start = end;
  }
  return [];
}

export function piecesText(pieces: readonly TokenPiece[]): string {
  let text = '';
  for (const piece of pieces) text += piece.text;
  return text;
}
