import { InvalidDirectiveError, parseDirectives } from './sim-directive.parser';

describe('parseDirectives', () => {
  it('reads several keys and flags from one bracket, anywhere in the message', () => {
    const { directives, text } = parseDirectives(
      'Tell me a story [sim tokens=40 tps=25 ttft=10 jitter=0.5 echo emit_ts] please',
    );
    expect(directives).toEqual({
      tokens: 40,
      tokensPerSecond: 25,
      ttftMs: 10,
      jitter: 0.5,
      echo: true,
      emitTimestamps: true,
      fault: undefined,
    });
    expect(text).toBe('Tell me a story  please');
  });

  it('reads several brackets, ignores unknown keys, and leaves look-alikes alone', () => {
    const { directives, text } = parseDirectives('[sim echo]\r\n[simple] text [sim colour=blue tokens=3]\n');
    expect(directives).toMatchObject({ echo: true, tokens: 3 });
    expect(text).toBe('[simple] text');
  });

  it('fills in fault defaults', () => {
    expect(parseDirectives('[sim fault=drop]').directives.fault).toEqual({ kind: 'drop', after: 3 });
    expect(parseDirectives('[sim fault=stall after=0]').directives.fault).toEqual({
      kind: 'stall',
      after: 0,
    });
    expect(parseDirectives('[sim fault=rate_limit]').directives.fault).toEqual({
      kind: 'rate_limit',
      retryAfterMs: 1000,
    });
    expect(parseDirectives('[sim fault=unavailable]').directives.fault).toEqual({ kind: 'unavailable' });
  });

  it.each([
    '[sim tokens=-1]',
    '[sim tokens=2.5]',
    '[sim tps=fast]',
    '[sim jitter=2]',
    '[sim fault=explode]',
    '[sim fault]',
  ])('refuses %s', (message) => {
    expect(() => parseDirectives(message)).toThrow(InvalidDirectiveError);
  });
});
