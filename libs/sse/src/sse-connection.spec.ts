import { type CompletionEvent, SSE_PING_INTERVAL_MS } from '@app/contracts';
import type { MessageEvent } from '@nestjs/common';
import type { Response } from 'express';
import { EventEmitter } from 'node:events';
import { Subject } from 'rxjs';
import { SseConnection, toMessageEvent } from './sse-connection';

const token = (seq: number): CompletionEvent => ({
  type: 'token',
  streamId: 's',
  seq,
  ts: 1,
  text: `t${seq}`,
});

/** The response as far as SseConnection reads it: its close and pipe events, destroyed and writableLength. */
function fakeResponse(): Response {
  return Object.assign(new EventEmitter(), { destroyed: false, writableLength: 0 }) as unknown as Response;
}

describe('SseConnection', () => {
  afterEach(() => jest.useRealTimers());

  it('maps an event to id = seq, event = its type, data = its JSON', () => {
    const event = token(7);
    expect(toMessageEvent(event)).toEqual({ id: '7', type: 'token', data: JSON.stringify(event) });
  });

  it('pings only after SSE_PING_INTERVAL_MS without an event', () => {
    jest.useFakeTimers();
    const events = new Subject<CompletionEvent>();
    const seen: MessageEvent[] = [];
    const subscription = new SseConnection(fakeResponse(), () => undefined)
      .messages(events)
      .subscribe((message) => seen.push(message));

    jest.advanceTimersByTime(SSE_PING_INTERVAL_MS - 1000);
    events.next(token(1));
    // An event restarts the idle interval: 1 s short of it after the event, no ping yet.
    jest.advanceTimersByTime(SSE_PING_INTERVAL_MS - 1000);
    expect(seen.map((message) => message.comment ?? message.type)).toEqual(['token']);
    jest.advanceTimersByTime(1000);
    expect(seen.map((message) => message.comment ?? message.type)).toEqual(['token', 'ping']);

    subscription.unsubscribe();
    jest.advanceTimersByTime(2 * SSE_PING_INTERVAL_MS);
    expect(seen).toHaveLength(2);
  });
});
