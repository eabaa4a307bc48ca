import type { CompletionEvent, CompletionRequest } from '@app/contracts';
import { Observable, Subject } from 'rxjs';
import { LiveRun, type ResumedLane } from '../run/live-run';
import type { CompletionTransport, StreamHooks } from '../transport/completion-transport';
import { type Exchange, savedConversation } from './chat-session';

/** One stream per run, driven by the test; the hooks let it hand over a resume token. */
class FakeSse implements CompletionTransport {
  readonly name = 'sse';
  readonly events = new Subject<CompletionEvent>();
  hooks: StreamHooks | undefined;

  stream(
    _request: CompletionRequest & { streamId: string },
    hooks?: StreamHooks,
  ): Observable<CompletionEvent> {
    this.hooks = hooks;
    return this.events;
  }

  resume(): Observable<CompletionEvent> {
    return this.events;
  }

  cancel(): Promise<void> {
    return Promise.resolve();
  }
}

function exchange(id: number, prompt: string, resumeFrom: ResumedLane[] | null = null) {
  const transport = new FakeSse();
  const request: CompletionRequest = { messages: [{ role: 'user', content: prompt }] };
  const run = new LiveRun(
    'sse',
    request,
    [transport],
    {
      now: () => 0,
      scheduleFrame: (flush) => flush(),
      newStreamId: () => `stream-${id}`,
    },
    resumeFrom,
  );
  run.start();
  const finish = (text: string) => {
    transport.events.next({ type: 'token', streamId: `stream-${id}`, seq: 1, text, ts: 0 });
    transport.events.next({
      type: 'done',
      streamId: `stream-${id}`,
      seq: 2,
      ts: 0,
      finishReason: 'stop',
      usage: null,
      timing: { ttftMs: 0, durationMs: 0 },
    });
  };
  return { exchange: { id, prompt, run } satisfies Exchange, transport, finish };
}

describe('savedConversation', () => {
  it('is nothing for an empty chat (New chat removes the entry)', () => {
    expect(savedConversation([], [])).toBeNull();
  });

  it('keeps the unfinished run with its streams and resume token, until it finishes', () => {
    const first = exchange(1, 'Hi');
    first.finish('Hello!');
    const second = exchange(2, 'More?');
    second.transport.hooks?.resumeToken?.('token-2');
    second.transport.events.next({ type: 'token', streamId: 'stream-2', seq: 1, text: 'Par', ts: 0 });

    const exchanges = [first.exchange, second.exchange];
    expect(savedConversation([{ prompt: 'Before', reply: 'Earlier' }], exchanges)).toEqual({
      exchanges: [
        { prompt: 'Before', reply: 'Earlier' },
        { prompt: 'Hi', reply: 'Hello!' },
      ],
      pending: {
        prompt: 'More?',
        mode: 'sse',
        request: { messages: [{ role: 'user', content: 'More?' }] },
        lanes: [{ transport: 'sse', streamId: 'stream-2', resumeToken: 'token-2' }],
      },
    });

    second.transport.events.next({
      type: 'done',
      streamId: 'stream-2',
      seq: 2,
      ts: 0,
      finishReason: 'stop',
      usage: null,
      timing: { ttftMs: 0, durationMs: 0 },
    });
    expect(savedConversation([], exchanges)).toEqual({
      exchanges: [
        { prompt: 'Hi', reply: 'Hello!' },
        { prompt: 'More?', reply: 'Par' },
      ],
      pending: null,
    });
  });

  it('saves a resumed run under the stream ids it resumed, so a second reload resumes it again', () => {
    const resumed = exchange(3, 'Again', [{ transport: 'sse', streamId: 'kept-0001', resumeToken: 't' }]);
    expect(savedConversation([], [resumed.exchange])?.pending?.lanes).toEqual([
      { transport: 'sse', streamId: 'kept-0001', resumeToken: 't' },
    ]);
  });

  it('keeps what a reasoning model thought, and for how long, beside its reply', () => {
    const thinker = exchange(5, 'Why?');
    const streamId = 'stream-5';
    thinker.transport.events.next({ type: 'reasoning', streamId, seq: 1, text: 'Let me see.', ts: 0 });
    thinker.transport.events.next({ type: 'token', streamId, seq: 2, text: 'Because.', ts: 0 });
    thinker.transport.events.next({
      type: 'done',
      streamId,
      seq: 3,
      ts: 0,
      finishReason: 'stop',
      usage: null,
      timing: { ttftMs: 5, durationMs: 900, reasoningMs: 640 },
    });
    const restored = { prompt: 'Before', reply: 'Earlier', reasoning: 'Hm.', thoughtMs: 120 };
    expect(savedConversation([restored], [thinker.exchange])?.exchanges).toEqual([
      restored,
      { prompt: 'Why?', reply: 'Because.', reasoning: 'Let me see.', thoughtMs: 640 },
    ]);
  });

  it('drops the pending run when the user stops listening', () => {
    const { exchange: running } = exchange(4, 'Stop me');
    running.run.dispose();
    expect(savedConversation([], [running])?.pending).toBeNull();
  });
});
