import type { CompletionEvent, RouteEvent } from '@app/contracts';
import { abandonLane, applyEvents, failLane, markAccepted, newLane, type ReceivedEvent } from './lane';

const id = 'stream-1';
const at = (arrivedAt: number, event: CompletionEvent): ReceivedEvent => ({ event, arrivedAt });
const start = at(10, { type: 'start', streamId: id, seq: 0, model: 'sim', ts: 5 });
const token = (seq: number, text: string, arrivedAt: number) =>
  at(arrivedAt, { type: 'token', streamId: id, seq, text, ts: arrivedAt - 1 });
const done = (seq: number, arrivedAt: number, finishReason: 'stop' | 'cancelled' = 'stop') =>
  at(arrivedAt, {
    type: 'done',
    streamId: id,
    seq,
    ts: arrivedAt,
    finishReason,
    usage: null,
    timing: { ttftMs: 3, durationMs: 9 },
  });

describe('lane', () => {
  const fresh = newLane('sse', id, 0);

  it('starts connecting and waits once accepted', () => {
    expect(fresh.status).toBe('connecting');
    expect(markAccepted(fresh).status).toBe('waiting');
    expect(applyEvents(fresh, [start])).toMatchObject({ status: 'waiting', model: 'sim', eventsReceived: 1 });
  });

  it('keeps the reasoning apart from the answer, with the arrival of its first part', () => {
    const reasoning = (seq: number, text: string, arrivedAt: number) =>
      at(arrivedAt, { type: 'reasoning', streamId: id, seq, text, ts: arrivedAt - 1 });
    const lane = applyEvents(fresh, [
      start,
      reasoning(1, 'Let me ', 15),
      reasoning(2, 'think.', 18),
      token(3, 'Hi', 40),
    ]);
    expect(lane).toMatchObject({
      status: 'streaming',
      reasoning: 'Let me think.',
      text: 'Hi',
      firstReasoningAt: 15,
    });
    expect(lane.arrivals.map((arrival) => arrival.seq)).toEqual([3]);
  });

  it('marks where the stream moved to another deployment, and who serves since (v1.2)', () => {
    const route = (
      seq: number,
      reason: 'fallback' | 'continuation',
      deployment: string,
      code?: RouteEvent['code'],
    ) =>
      at(seq * 10, {
        type: 'route',
        streamId: id,
        seq,
        ts: seq * 10,
        model: 'llama',
        deployment,
        reason,
        ...(code ? { code } : {}),
      });
    const lane = applyEvents(fresh, [
      start,
      route(1, 'fallback', 'west', 'upstream_unavailable'),
      token(2, 'Hel', 30),
      route(3, 'continuation', 'east'),
      token(4, 'lo', 50),
    ]);
    expect(lane.text).toBe('Hello');
    expect(lane.routes).toEqual([
      { at: 0, reason: 'fallback', model: 'llama', deployment: 'west', code: 'upstream_unavailable' },
      { at: 3, reason: 'continuation', model: 'llama', deployment: 'east' },
    ]);
    expect(lane.servedBy).toEqual({ model: 'llama', deployment: 'east' });
    expect(lane.arrivals.map((arrival) => arrival.seq)).toEqual([2, 4]);
    expect(applyEvents(fresh, [start, token(1, 'a', 20)])).toMatchObject({ routes: [], servedBy: null });
  });

  it('accumulates tokens and their arrivals without mutating the previous lane', () => {
    const waiting = applyEvents(fresh, [start]);
    const streaming = applyEvents(waiting, [token(1, 'Hel', 20), token(2, 'lo', 30)]);
    expect(streaming).toMatchObject({ status: 'streaming', text: 'Hello', eventsReceived: 3 });
    expect(streaming.arrivals).toEqual([
      { seq: 1, serverTs: 19, arrivedAt: 20 },
      { seq: 2, serverTs: 29, arrivedAt: 30 },
    ]);
    expect(waiting.text).toBe('');
    expect(waiting.arrivals).toEqual([]);
  });

  it('ends with done, or cancelled when the server says so, and ignores anything after', () => {
    const finished = applyEvents(fresh, [start, token(1, 'a', 20), done(2, 40), token(3, 'late', 50)]);
    expect(finished).toMatchObject({
      status: 'done',
      text: 'a',
      endedAt: 40,
      eventsReceived: 3,
      finishReason: 'stop',
    });
    expect(applyEvents(finished, [token(4, 'x', 60)])).toBe(finished);
    expect(applyEvents(fresh, [start, done(1, 30, 'cancelled')]).status).toBe('cancelled');
  });

  it('keeps a stream error in words', () => {
    const failed = applyEvents(fresh, [
      start,
      at(30, {
        type: 'error',
        streamId: id,
        seq: 1,
        ts: 29,
        error: { code: 'upstream_unavailable', message: 'The model failed', retryable: true },
      }),
    ]);
    expect(failed).toMatchObject({ status: 'error', endedAt: 30 });
    expect(failed.error).toEqual({
      code: 'upstream_unavailable',
      message: 'The model failed',
      retryable: true,
    });
  });

  it('fails or abandons only an unfinished lane', () => {
    const error = { code: 'network', message: 'gone', retryable: true };
    expect(failLane(fresh, error, 5)).toMatchObject({ status: 'error', error, endedAt: 5 });
    expect(abandonLane(fresh, 5)).toMatchObject({ status: 'cancelled', endedAt: 5 });
    const finished = applyEvents(fresh, [done(1, 9)]);
    expect(failLane(finished, error, 10)).toBe(finished);
    expect(abandonLane(finished, 10)).toBe(finished);
  });
});
