import type { CompletionEvent, CompletionRequest } from '@app/contracts';
import { Observable, Subject } from 'rxjs';
import type {
  CompletionTransport,
  ResumeTarget,
  StreamHooks,
  TransportName,
} from '../transport/completion-transport';
import { TransportError } from '../transport/transport-error';
import { computeRunMetrics } from '../metrics/run-metrics';
import { LiveRun, overallStatus, RESUME_EXPIRED, type ResumedLane } from './live-run';

class FakeTransport implements CompletionTransport {
  readonly streams = new Map<string, Subject<CompletionEvent>>();
  readonly cancelled: string[] = [];
  readonly resumed: ResumeTarget[] = [];
  readonly hooks = new Map<string, StreamHooks | undefined>();
  unsubscribed = 0;

  constructor(readonly name: TransportName) {}

  stream(request: CompletionRequest & { streamId: string }, hooks?: StreamHooks) {
    this.hooks.set(request.streamId, hooks);
    return this.listen(request.streamId);
  }

  resume(target: ResumeTarget) {
    this.resumed.push(target);
    return this.listen(target.streamId);
  }

  private listen(streamId: string) {
    const subject = new Subject<CompletionEvent>();
    this.streams.set(streamId, subject);
    return new Observable<CompletionEvent>((subscriber) => {
      const subscription = subject.subscribe(subscriber);
      return () => {
        this.unsubscribed++;
        subscription.unsubscribe();
      };
    });
  }

  async cancel(streamId: string): Promise<void> {
    this.cancelled.push(streamId);
    const subject = this.streams.get(streamId);
    subject?.next({
      type: 'done',
      streamId,
      seq: 9,
      ts: 0,
      finishReason: 'cancelled',
      usage: null,
      timing: { ttftMs: 0, durationMs: 0 },
    });
    subject?.complete();
  }
}

function setup(mode: TransportName | 'race', resumeFrom: ResumedLane[] | null = null) {
  const transports =
    mode === 'race' ? [new FakeTransport('sse'), new FakeTransport('socket.io')] : [new FakeTransport(mode)];
  let clock = 1000;
  const frames: (() => void)[] = [];
  let ids = 0;
  const run = new LiveRun(
    mode,
    { messages: [{ role: 'user', content: 'hi' }] },
    transports,
    {
      now: () => clock,
      scheduleFrame: (flush) => frames.push(flush),
      newStreamId: () => `stream-${++ids}`,
    },
    resumeFrom,
  );
  return {
    run,
    transports,
    tick: (ms: number) => (clock += ms),
    paint: () => frames.splice(0).forEach((flush) => flush()),
    frames,
  };
}

const token = (streamId: string, seq: number, text: string): CompletionEvent => ({
  type: 'token',
  streamId,
  seq,
  text,
  ts: 0,
});

describe('LiveRun', () => {
  it('batches tokens into one update per frame, keeping each arrival time', () => {
    const { run, transports, tick, paint, frames } = setup('sse');
    run.start();
    const stream = transports[0].streams.get('stream-1')!;
    stream.next({ type: 'start', streamId: 'stream-1', seq: 0, model: 'sim', ts: 0 });
    tick(5);
    stream.next(token('stream-1', 1, 'Hel'));
    tick(5);
    stream.next(token('stream-1', 2, 'lo'));
    expect(frames).toHaveLength(1);
    expect(run.lanes()[0].text).toBe('');
    paint();
    expect(run.lanes()[0]).toMatchObject({ status: 'streaming', text: 'Hello', eventsReceived: 3 });
    expect(run.lanes()[0].arrivals.map((a) => a.arrivedAt)).toEqual([1005, 1010]);
    expect(run.status()).toBe('streaming');
  });

  it('settles at once on the terminal event and unsubscribes', async () => {
    const { run, transports } = setup('socket.io');
    run.start();
    const stream = transports[0].streams.get('stream-1')!;
    stream.next(token('stream-1', 1, 'a'));
    stream.next({
      type: 'done',
      streamId: 'stream-1',
      seq: 2,
      ts: 0,
      finishReason: 'stop',
      usage: null,
      timing: { ttftMs: 1, durationMs: 2 },
    });
    const lanes = await run.finished;
    expect(lanes[0]).toMatchObject({ status: 'done', text: 'a' });
    expect(run.status()).toBe('done');
    expect(transports[0].unsubscribed).toBe(1);
  });

  it('races the same request over both transports with distinct stream ids', () => {
    const { run, transports } = setup('race');
    run.start();
    expect([...transports[0].streams.keys()]).toEqual(['stream-1']);
    expect([...transports[1].streams.keys()]).toEqual(['stream-2']);
    expect(run.lanes().map((lane) => lane.transport)).toEqual(['sse', 'socket.io']);
  });

  it('stop sends an explicit cancel and ends cancelled', async () => {
    const { run, transports } = setup('race');
    run.start();
    await run.stop();
    expect(transports[0].cancelled).toEqual(['stream-1']);
    expect(transports[1].cancelled).toEqual(['stream-2']);
    expect(run.status()).toBe('cancelled');
  });

  it('turns a refusal into an error lane with its message', async () => {
    const { run, transports } = setup('sse');
    run.start();
    transports[0].streams
      .get('stream-1')!
      .error(new TransportError('unauthorized', 'Missing credentials', false));
    const [lane] = await run.finished;
    expect(lane).toMatchObject({
      status: 'error',
      error: { code: 'unauthorized', message: 'Missing credentials', retryable: false },
    });
  });

  it('stopping before the start cancels without sending', async () => {
    const { run, transports } = setup('sse');
    await run.stop();
    expect(transports[0].streams.size).toBe(0);
    expect(run.status()).toBe('cancelled');
  });
});

describe('LiveRun resumed after a reload', () => {
  const saved: ResumedLane[] = [{ transport: 'sse', streamId: 'before-reload-1', resumeToken: 'tok' }];

  it('keeps the stream id from before the reload and remembers the resume token of a new stream', () => {
    const { run, transports } = setup('sse');
    run.start();
    transports[0].hooks.get('stream-1')?.resumeToken?.('tok-1');
    expect(run.lanes()[0]).toMatchObject({ resumed: false, resumeToken: 'tok-1' });

    const resumed = setup('sse', saved);
    resumed.run.start();
    expect(resumed.transports[0].resumed).toEqual([
      { streamId: 'before-reload-1', lastSeq: -1, resumeToken: 'tok' },
    ]);
    expect(resumed.transports[0].hooks.size).toBe(0);
    expect(resumed.run.lanes()[0]).toMatchObject({ streamId: 'before-reload-1', resumed: true });
  });

  it('rebuilds the answer from the replay, then ends like any run, without latency figures', async () => {
    const { run, transports, paint } = setup('sse', saved);
    run.start();
    const stream = transports[0].streams.get('before-reload-1')!;
    stream.next({ type: 'start', streamId: 'before-reload-1', seq: 0, model: 'sim', ts: 0 });
    stream.next(token('before-reload-1', 1, 'Hel'));
    stream.next(token('before-reload-1', 2, 'lo'));
    paint();
    expect(run.status()).toBe('streaming');
    stream.next({
      type: 'done',
      streamId: 'before-reload-1',
      seq: 3,
      ts: 0,
      finishReason: 'stop',
      usage: null,
      timing: { ttftMs: 1, durationMs: 2 },
    });
    const [lane] = await run.finished;
    expect(lane).toMatchObject({ status: 'done', text: 'Hello', resumed: true });
    expect(computeRunMetrics(lane, null)).toMatchObject({ ttftMs: null, durationMs: null, tokens: 2 });
  });

  it('says plainly that an expired stream could not be recovered', async () => {
    const { run, transports } = setup('sse', saved);
    run.start();
    transports[0].streams
      .get('before-reload-1')!
      .error(new TransportError('not_found', 'No such stream, or it is no longer available.', false));
    const [lane] = await run.finished;
    expect(lane).toMatchObject({ status: 'error', error: RESUME_EXPIRED });
    expect(RESUME_EXPIRED.message).toBe(
      'The answer could not be recovered after the reload: it expired on the server.',
    );
  });

  it('stop cancels a resumed stream by its id', async () => {
    const { run, transports } = setup('sse', saved);
    run.start();
    await run.stop();
    expect(transports[0].cancelled).toEqual(['before-reload-1']);
    expect(run.status()).toBe('cancelled');
  });
});

describe('overallStatus', () => {
  it('follows the most advanced running lane, then the outcome', () => {
    expect(overallStatus(['connecting', 'streaming'])).toBe('streaming');
    expect(overallStatus(['done', 'waiting'])).toBe('waiting');
    expect(overallStatus(['done', 'done'])).toBe('done');
    expect(overallStatus(['done', 'cancelled'])).toBe('cancelled');
    expect(overallStatus(['error', 'done'])).toBe('error');
  });
});
