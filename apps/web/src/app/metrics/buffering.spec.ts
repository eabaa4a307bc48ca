import type { TokenArrival } from '../run/lane';
import { detectBuffering } from './buffering';

/** Tokens produced every `everyMs` on the server, each arriving when `arrive` says. */
function stream(
  count: number,
  everyMs: number,
  arrive: (serverTs: number, i: number) => number,
): TokenArrival[] {
  return Array.from({ length: count }, (_, i) => {
    const serverTs = 1_000_000 + i * everyMs;
    return { seq: i + 1, serverTs, arrivedAt: arrive(serverTs, i) };
  });
}

describe('detectBuffering', () => {
  it('finds nothing in a stream that arrives as it was produced, however late', () => {
    expect(detectBuffering(stream(100, 16, (ts) => ts + 150))).toEqual({
      heldTokens: 0,
      longestHeldMs: 0,
      suspected: false,
    });
  });

  it('does not count tokens the server sent together (one upstream read, one ts)', () => {
    const together = stream(100, 16, (ts) => ts + 5).map((arrival, i) => ({
      ...arrival,
      serverTs: 1_000_000 + Math.floor(i / 10) * 160,
      arrivedAt: 1_000_000 + Math.floor(i / 10) * 160 + 5 + (i % 10) * 0.01,
    }));
    expect(detectBuffering(together).suspected).toBe(false);
  });

  it('warns when a proxy releases its buffer in bursts spanning hundreds of ms of server time', () => {
    // 25 tokens per 4 KB buffer, each buffer released when full: all its tokens arrive with the last one.
    const buffered = stream(
      150,
      16,
      (_, i) => 1_000_000 + (Math.floor(i / 25) * 25 + 24) * 16 + 3 + i * 0.01,
    );
    expect(detectBuffering(buffered)).toEqual({ heldTokens: 150, longestHeldMs: 384, suspected: true });
  });

  it('does not warn for one pause of the page that delivered a few tokens at once', () => {
    const paused = stream(200, 16, (ts, i) => (i >= 50 && i < 60 ? 1_000_000 + 60 * 16 + i * 0.01 : ts + 2));
    const seen = detectBuffering(paused);
    expect(seen).toMatchObject({ heldTokens: 11, suspected: false });
  });
});
