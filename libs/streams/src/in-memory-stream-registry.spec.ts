import type { CompletionService } from '@app/completion';
import type { CompletionEvent, CompletionRequest } from '@app/contracts';
import { Logger } from '@nestjs/common';
import { Observable, type Subscriber } from 'rxjs';
import { InMemoryStreamRegistry } from './in-memory-stream-registry';
import { StreamIdConflictError } from './stream-registry';

/** A completion stream driven by hand: the test pushes events and sees cancel and unsubscribe. */
class HandDriven {
  subscriber: Subscriber<CompletionEvent> | undefined;
  cancel: AbortSignal | undefined;
  unsubscribed = false;
  private seq = 0;
  streamId = '';

  readonly service = {
    stream: (_request: CompletionRequest, options: { streamId: string; controller?: AbortController }) =>
      new Observable<CompletionEvent>((subscriber) => {
        this.subscriber = subscriber;
        this.cancel = options.controller?.signal;
        this.streamId = options.streamId;
        this.push({ type: 'start', model: 'm' });
        this.cancel?.addEventListener('abort', () => this.finish('cancelled'));
        return () => {
          this.unsubscribed = true;
        };
      }),
  } as unknown as CompletionService;

  token(text: string): void {
    this.push({ type: 'token', text });
  }

  finish(finishReason: 'stop' | 'cancelled' = 'stop'): void {
    this.push({ type: 'done', finishReason, usage: null, timing: { ttftMs: 1, durationMs: 2 } });
    this.subscriber?.complete();
  }

  private push(partial: Record<string, unknown>): void {
    this.subscriber?.next({
      ...partial,
      streamId: this.streamId,
      seq: this.seq++,
      ts: Date.now(),
    } as CompletionEvent);
  }
}

const request: CompletionRequest = { messages: [{ role: 'user', content: 'hi' }] };
const limits = {
  requestsPerMinute: 1000,
  maxConcurrentStreams: 1000,
  maxListenersPerStream: 2,
  maxListenersPerPrincipal: 3,
};
const released: string[] = [];
const slot = (name = 'slot') => ({ release: () => released.push(name) });

function collect(registry: InMemoryStreamRegistry, id: string, owner: string, afterSeq = -1) {
  const events: CompletionEvent[] = [];
  let completed = false;
  const listening = registry.listen(id, owner, afterSeq);
  const subscription = listening.ok
    ? listening.events.subscribe({ next: (event) => events.push(event), complete: () => (completed = true) })
    : undefined;
  return { events, subscription, isCompleted: () => completed };
}

describe('InMemoryStreamRegistry', () => {
  // The registry logs each start and end; the app sends that to pino, here it would only be noise.
  beforeAll(() => Logger.overrideLogger(false));
  let upstream: HandDriven;

  beforeEach(() => {
    jest.useFakeTimers();
    upstream = new HandDriven();
  });
  afterEach(() => jest.useRealTimers());

  const registryWith = (resumeGraceMs: number, retentionMs = 60_000) =>
    new InMemoryStreamRegistry(
      upstream.service,
      { resumeGraceMs, retentionMs, shutdownGraceMs: 1000 },
      limits,
    );

  it('buffers the start event until a transport listens, then relays live events', () => {
    const registry = registryWith(5000);
    const id = registry.start(request, 'alice', 'sse', slot());
    const listener = collect(registry, id, 'alice');

    upstream.token('a');
    upstream.finish();

    expect(listener.events.map((event) => event.type)).toEqual(['start', 'token', 'done']);
    expect(listener.isCompleted()).toBe(true);
  });

  it('makes unguessable ids unless the client chose one, and refuses a duplicate of the same owner', () => {
    const registry = registryWith(5000);
    const first = registry.start(request, 'alice', 'sse', slot());

    expect(first).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(registry.start({ ...request, streamId: 'chosen-id' }, 'alice', 'sse', slot())).toBe('chosen-id');
    expect(() => registry.start({ ...request, streamId: 'chosen-id' }, 'alice', 'sse', slot())).toThrow(
      StreamIdConflictError,
    );
  });

  it("scopes ids to their owner: another principal's id is a fresh one, and each reaches only its own", () => {
    const registry = registryWith(5000);
    registry.start({ ...request, streamId: 'same-id' }, 'alice', 'sse', slot());
    const alice = collect(registry, 'same-id', 'alice');
    registry.start({ ...request, streamId: 'same-id' }, 'bob', 'sse', slot());

    expect(registry.cancel('same-id', 'bob')).toBe(true);
    expect(alice.events.map((event) => event.type)).toEqual(['start']);
    expect(registry.size).toBe(2);
  });

  it('hides a stream from another principal, as if it did not exist', () => {
    const registry = registryWith(5000);
    const id = registry.start(request, 'alice', 'sse', slot());

    expect(registry.listen(id, 'mallory')).toEqual({ ok: false, reason: 'not_found' });
    expect(registry.cancel(id, 'mallory')).toBe(false);
    expect(registry.cancel('unknown', 'alice')).toBe(false);
    expect(upstream.cancel?.aborted).toBe(false);
  });

  it('cancels at once on an explicit cancel', () => {
    const registry = registryWith(5000);
    const id = registry.start(request, 'alice', 'sse', slot());
    const listener = collect(registry, id, 'alice');

    expect(registry.cancel(id, 'alice')).toBe(true);

    expect(upstream.cancel?.aborted).toBe(true);
    expect(listener.events.at(-1)).toMatchObject({ type: 'done', finishReason: 'cancelled' });
  });

  it('keeps a stream nobody listens to for the resume grace, then cancels it', () => {
    const registry = registryWith(5000);
    const id = registry.start(request, 'alice', 'sse', slot());
    collect(registry, id, 'alice').subscription?.unsubscribe();

    jest.advanceTimersByTime(4999);
    expect(upstream.cancel?.aborted).toBe(false);

    jest.advanceTimersByTime(1);
    expect(upstream.cancel?.aborted).toBe(true);
  });

  it('lets a resume within the grace keep the stream alive, replaying what was missed', () => {
    const registry = registryWith(5000);
    const id = registry.start(request, 'alice', 'sse', slot());
    const first = collect(registry, id, 'alice');
    upstream.token('a');
    first.subscription?.unsubscribe();
    upstream.token('b');
    jest.advanceTimersByTime(3000);

    const resumed = collect(registry, id, 'alice', first.events.at(-1)?.seq);
    jest.advanceTimersByTime(10_000);
    upstream.finish();

    expect(upstream.cancel?.aborted).toBe(false);
    expect(resumed.events.map((event) => event.seq)).toEqual([2, 3]);
  });

  it('cancels at once when the grace is 0', () => {
    const registry = registryWith(0);
    const id = registry.start(request, 'alice', 'sse', slot());
    collect(registry, id, 'alice').subscription?.unsubscribe();

    expect(upstream.cancel?.aborted).toBe(true);
  });

  it('keeps a finished stream for the retention time, then forgets it', () => {
    const registry = registryWith(5000, 60_000);
    const id = registry.start(request, 'alice', 'sse', slot());
    collect(registry, id, 'alice');
    upstream.finish();

    jest.advanceTimersByTime(59_999);
    const replay = collect(registry, id, 'alice', 0);
    expect(replay.events.map((event) => event.type)).toEqual(['done']);
    expect(replay.isCompleted()).toBe(true);

    jest.advanceTimersByTime(1);
    expect(registry.listen(id, 'alice')).toEqual({ ok: false, reason: 'not_found' });
    expect(registry.size).toBe(0);
  });

  it('gives the concurrency slot back when the stream ends, not before', () => {
    const registry = registryWith(5000);
    released.length = 0;
    const id = registry.start(request, 'alice', 'sse', slot('alice-1'));
    collect(registry, id, 'alice');
    upstream.token('a');
    const whileRunning = [...released];
    upstream.finish();

    expect(whileRunning).toEqual([]);
    expect(released).toEqual(['alice-1']);
  });

  it('caps the listeners of a resume per stream and per owner, and frees a place on leave', () => {
    const registry = registryWith(5000);
    const first = registry.start(request, 'alice', 'sse', slot());
    const second = registry.start(request, 'alice', 'sse', slot());
    const outcomes = [
      registry.listen(first, 'alice', -1, 'start'),
      registry.listen(first, 'alice'),
      registry.listen(first, 'alice'),
      registry.listen(second, 'alice'),
      registry.listen(second, 'alice'),
    ];
    const reasons = outcomes.map((outcome) => (outcome.ok ? 'ok' : outcome.reason));
    const held = outcomes[1];
    if (held.ok) {
      held.leave();
      held.leave();
    }

    expect(reasons).toEqual(['ok', 'ok', 'listeners_per_stream', 'ok', 'listeners_per_principal']);
    expect(registry.listen(second, 'alice').ok).toBe(true);
    expect(registry.listen(second, 'alice').ok).toBe(false);
  });

  it('stops every upstream request on shutdown', () => {
    const registry = registryWith(5000);
    registry.start(request, 'alice', 'sse', slot());

    registry.onApplicationShutdown();

    expect(upstream.unsubscribed).toBe(true);
    expect(registry.size).toBe(0);
  });
});
