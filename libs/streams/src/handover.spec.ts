import type { CompletionEvent } from '@app/contracts';
import { continuationOf, storedRequest } from './handover';

const streamId = 'handover-spec';
const start: CompletionEvent = { type: 'start', streamId, seq: 0, ts: 1000, model: 'simulator' };

describe('continuationOf', () => {
  it('goes on after the last event, with the text and reasoning so far and the original timing', () => {
    const events: CompletionEvent[] = [
      start,
      { type: 'reasoning', streamId, seq: 1, ts: 1010, text: 'think ' },
      { type: 'reasoning', streamId, seq: 2, ts: 1020, text: 'more' },
      { type: 'token', streamId, seq: 3, ts: 1030, text: 'Hé' },
      { type: 'token', streamId, seq: 4, ts: 1040, text: 'llo ✓' },
    ];
    expect(continuationOf(events)).toEqual({
      seq: 5,
      text: 'Héllo ✓',
      reasoning: 'think more',
      reason: 'handover',
      startedAt: 1000,
      firstEventAt: 1010,
    });
  });

  it('a stream with nothing but its start goes on at seq 1, with no first event yet', () => {
    expect(continuationOf([start])).toEqual({
      seq: 1,
      text: '',
      reasoning: '',
      reason: 'handover',
      startedAt: 1000,
      firstEventAt: undefined,
    });
  });

  it('nothing exact to continue from: no start, a gap, or an ended stream', () => {
    const token = (seq: number): CompletionEvent => ({
      type: 'token',
      streamId,
      seq,
      ts: 1000 + seq,
      text: 'x',
    });
    expect(continuationOf([])).toBeUndefined();
    expect(continuationOf([token(5), token(6)])).toBeUndefined();
    expect(continuationOf([start, token(1), token(3)])).toBeUndefined();
    expect(
      continuationOf([
        start,
        token(1),
        {
          type: 'error',
          streamId,
          seq: 2,
          ts: 1002,
          error: { code: 'stream_lost', message: 'x', retryable: true },
        },
      ]),
    ).toBeUndefined();
  });
});

describe('storedRequest', () => {
  it('keeps what a continuation needs and drops the stream id', () => {
    expect(
      storedRequest({
        messages: [{ role: 'user', content: 'hi' }],
        model: 'simulator-reasoning',
        maxTokens: 10,
        temperature: 0.5,
        topP: 0.9,
        streamId: 'client-chosen-id',
      }),
    ).toEqual({
      messages: [{ role: 'user', content: 'hi' }],
      model: 'simulator-reasoning',
      maxTokens: 10,
      temperature: 0.5,
      topP: 0.9,
    });
  });
});
