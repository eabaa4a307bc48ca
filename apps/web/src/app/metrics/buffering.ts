import type { TokenArrival } from '../run/lane';

/**
 * Tokens that reach the client together although the server produced them far apart: something between the two
 * held them and let them go at once (a proxy buffering the response, a compressing CDN). A transport or the
 * network only delays tokens; it does not gather a quarter of a second of them into one read.
 */
export interface Buffering {
  /** Tokens that arrived in such bursts. */
  heldTokens: number;
  /** The longest span of server time one burst gathered, in ms. */
  longestHeldMs: number;
  /** Whether to warn: enough of the stream arrived so for it not to be a pause of the page. */
  suspected: boolean;
}

/** Arrivals closer than this are one read of the stream. */
const SAME_READ_MS = 2;
/** A burst is unexplained when its tokens were produced at least this far apart on the server. */
const HELD_SPAN_MS = 100;
/** And when it gathers at least this many tokens. */
const HELD_TOKENS = 4;
/** A busy page can hold one read back now and then; a proxy holds a good part of every stream. */
const HELD_SHARE = 0.2;

/**
 * Bursts of tokens that arrived within one read and whose server `ts` span at least `HELD_SPAN_MS`. Tokens the
 * server itself sent together (one upstream read gives them one `ts`) are not held. No clock offset is needed:
 * only differences of arrival times and differences of server times are compared.
 */
export function detectBuffering(arrivals: readonly TokenArrival[]): Buffering {
  let heldTokens = 0;
  let longestHeldMs = 0;
  let start = 0;
  for (let i = 1; i <= arrivals.length; i++) {
    const sameRead = i < arrivals.length && arrivals[i].arrivedAt - arrivals[i - 1].arrivedAt < SAME_READ_MS;
    if (sameRead) continue;
    const burst = arrivals.slice(start, i);
    const span = burst.length > 1 ? burst[burst.length - 1].serverTs - burst[0].serverTs : 0;
    if (burst.length >= HELD_TOKENS && span >= HELD_SPAN_MS) {
      heldTokens += burst.length;
      longestHeldMs = Math.max(longestHeldMs, span);
    }
    start = i;
  }
  return {
    heldTokens,
    longestHeldMs,
    suspected: arrivals.length > 0 && heldTokens / arrivals.length >= HELD_SHARE,
  };
}
