import type { CompletionEvent, StartAck } from '@app/contracts';
import { firstValueFrom, toArray } from 'rxjs';
import { type CompletionSocket, socketCompletionStream, socketResumedStream } from './socket-io-transport';
import { TransportError } from './transport-error';

type Handler = (...args: never[]) => void;

/** Just enough of a socket.io-client Socket: listeners, and acks answered by `answer`. */
class FakeSocket {
  readonly emitted: [string, unknown][] = [];
  private readonly handlers = new Map<string, Set<Handler>>();

  constructor(private readonly answer: (event: string, payload: unknown) => unknown) {}

  on(event: string, handler: Handler) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event)!.add(handler);
    return this;
  }

  off(event: string, handler: Handler) {
    this.handlers.get(event)?.delete(handler);
    return this;
  }

  timeout() {
    return {
      emitWithAck: async (event: string, payload: unknown) => {
        this.emitted.push([event, payload]);
        return this.answer(event, payload);
      },
    };
  }

  fire(event: string, ...args: unknown[]): void {
    this.handlers.get(event)?.forEach((handler) => (handler as (...a: unknown[]) => void)(...args));
  }

  listeners(event: string): number {
    return this.handlers.get(event)?.size ?? 0;
  }

  asSocket(): CompletionSocket {
    return this as unknown as CompletionSocket;
  }
}

const request = { messages: [{ role: 'user' as const, content: 'hi' }], streamId: 'mine-0001' };
const event = (streamId: string, seq: number, type: 'token' | 'done' = 'token'): CompletionEvent =>
  type === 'token'
    ? { type, streamId, seq, text: `t${seq}`, ts: 0 }
    : { type, streamId, seq, ts: 0, finishReason: 'stop', usage: null, timing: { ttftMs: 1, durationMs: 2 } };

describe('socketCompletionStream', () => {
  it('starts the stream and emits only its own events, in order, until the terminal one', async () => {
    const socket = new FakeSocket((): StartAck => ({ ok: true, streamId: 'mine-0001' }));
    const events = firstValueFrom(
      socketCompletionStream(request, async () => socket.asSocket()).pipe(toArray()),
    );
    await new Promise((resolve) => setTimeout(resolve));
    socket.fire('completion', event('mine-0001', 1));
    socket.fire('completion', event('other-0001', 1));
    socket.fire('completion', event('mine-0001', 1)); // a replay after resume: already seen
    socket.fire('completion', event('mine-0001', 2, 'done'));
    expect((await events).map((e) => [e.streamId, e.seq])).toEqual([
      ['mine-0001', 1],
      ['mine-0001', 2],
    ]);
    expect(socket.emitted).toEqual([['completion:start', request]]);
    expect(socket.listeners('completion')).toBe(0);
  });

  it('reports a refused start with its message', async () => {
    const socket = new FakeSocket((): StartAck => ({
      ok: false,
      error: { code: 'invalid_request', message: 'messages must not be empty' },
    }));
    const error = await firstValueFrom(socketCompletionStream(request, async () => socket.asSocket())).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TransportError);
    expect(error).toMatchObject({ code: 'invalid_request', message: 'messages must not be empty' });
  });

  it('resumes from the last seq after the connection comes back', async () => {
    const socket = new FakeSocket((name) =>
      name === 'completion:start' ? { ok: true, streamId: 'mine-0001' } : { ok: true },
    );
    const subscription = socketCompletionStream(request, async () => socket.asSocket()).subscribe();
    await new Promise((resolve) => setTimeout(resolve));
    socket.fire('completion', event('mine-0001', 1));
    socket.fire('completion', event('mine-0001', 2));
    socket.fire('disconnect', 'transport close');
    socket.fire('connect');
    expect(socket.emitted[1]).toEqual(['completion:resume', { streamId: 'mine-0001', lastSeq: 2 }]);
    subscription.unsubscribe();
    expect(socket.listeners('completion')).toBe(0);
  });

  it('surfaces a refused handshake', async () => {
    const refused = new TransportError('unauthorized', 'The server needs credentials', false);
    const error = await firstValueFrom(socketCompletionStream(request, () => Promise.reject(refused))).catch(
      (e: unknown) => e,
    );
    expect(error).toBe(refused);
  });
});

describe('socketResumedStream', () => {
  it('asks for the replay once connected, listening first, and rebuilds the stream from seq 0', async () => {
    const socket = new FakeSocket(() => {
      // The server may emit the replay before its ack reaches us: the listener is already there.
      socket.fire('completion', event('mine-0001', 0));
      return { ok: true };
    });
    const events = firstValueFrom(
      socketResumedStream({ streamId: 'mine-0001', lastSeq: -1 }, async () => socket.asSocket()).pipe(
        toArray(),
      ),
    );
    await new Promise((resolve) => setTimeout(resolve));
    socket.fire('completion', event('mine-0001', 1));
    socket.fire('completion', event('mine-0001', 2, 'done'));
    expect((await events).map((e) => e.seq)).toEqual([0, 1, 2]);
    expect(socket.emitted).toEqual([['completion:resume', { streamId: 'mine-0001', lastSeq: -1 }]]);
    expect(socket.listeners('completion')).toBe(0);
  });

  it('resumes again from the last seq after the connection comes back', async () => {
    const socket = new FakeSocket(() => ({ ok: true }));
    const subscription = socketResumedStream({ streamId: 'mine-0001', lastSeq: -1 }, async () =>
      socket.asSocket(),
    ).subscribe();
    await new Promise((resolve) => setTimeout(resolve));
    socket.fire('completion', event('mine-0001', 0));
    socket.fire('disconnect', 'transport close');
    socket.fire('connect');
    expect(socket.emitted[1]).toEqual(['completion:resume', { streamId: 'mine-0001', lastSeq: 0 }]);
    subscription.unsubscribe();
  });

  it('reports a stream the server no longer has as not_found', async () => {
    const socket = new FakeSocket(() => ({
      ok: false,
      error: { code: 'not_found', message: 'No such stream' },
    }));
    const error = await firstValueFrom(
      socketResumedStream({ streamId: 'gone-0001', lastSeq: -1 }, async () => socket.asSocket()),
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect(error).toMatchObject({ code: 'not_found' });
    expect(socket.emitted).toHaveLength(1);
  });
});
