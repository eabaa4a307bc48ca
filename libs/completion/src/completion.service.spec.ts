import type { CompletionEvent } from '@app/contracts';
import { Logger } from '@nestjs/common';
import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';
import type { CompletionModuleOptions } from './completion.module-definition';
import type { CompletionProvider, ProviderChunk, ProviderRequest } from './completion-provider';
import { CompletionService } from './completion.service';
import { UpstreamError } from './upstream.error';

const options: CompletionModuleOptions = {
  defaultModel: 'default-model',
  firstTokenTimeoutMs: 200,
  idleTimeoutMs: 100,
  openai: { maxRetries: 0 },
};
const request = { messages: [{ role: 'user' as const, content: 'hi' }] };

/** A provider scripted chunk by chunk, recording what it was asked and whether it was aborted. */
class ScriptedProvider implements CompletionProvider {
  readonly name = 'scripted';
  readonly ping = async () => undefined;
  requests: ProviderRequest[] = [];
  signal: AbortSignal | undefined;

  constructor(
    private readonly script: (signal: AbortSignal) => AsyncIterable<ProviderChunk | readonly ProviderChunk[]>,
  ) {}

  stream(
    providerRequest: ProviderRequest,
    signal: AbortSignal,
  ): AsyncIterable<ProviderChunk | readonly ProviderChunk[]> {
    this.requests.push(providerRequest);
    this.signal = signal;
    return this.script(signal);
  }
}

async function* chunks(...items: ProviderChunk[]): AsyncIterable<ProviderChunk> {
  for (const item of items) {
    yield item;
  }
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

async function* hangs(signal: AbortSignal, ...before: ProviderChunk[]): AsyncIterable<ProviderChunk> {
  yield* chunks(...before);
  await untilAborted(signal);
}

const collect = (service: CompletionService, streamId = 's1', cancel?: AbortSignal) =>
  lastValueFrom(service.stream(request, { streamId, cancel }).pipe(toArray()));

describe('CompletionService', () => {
  it('emits start, one token per text chunk, then done with usage, seq rising by one', async () => {
    const provider = new ScriptedProvider(() =>
      chunks(
        { kind: 'text', text: 'Hel' },
        { kind: 'text', text: 'lo' },
        { kind: 'finish', reason: 'stop' },
        { kind: 'usage', usage: { promptTokens: 3, completionTokens: 2, totalTokens: 5 } },
      ),
    );
    const events = await collect(new CompletionService(provider, options));

    expect(events.map(({ type, seq }) => [type, seq])).toEqual([
      ['start', 0],
      ['token', 1],
      ['token', 2],
      ['done', 3],
    ]);
    expect(events[0]).toMatchObject({ streamId: 's1', model: 'default-model' });
    expect(events[3]).toMatchObject({
      finishReason: 'stop',
      usage: { promptTokens: 3, completionTokens: 2, totalTokens: 5 },
    });
    expect(provider.requests[0]).toMatchObject({ model: 'default-model', messages: request.messages });
  });

  it('takes batches of chunks as well as single ones: one event per chunk, in order, the events of a batch sharing their ts', async () => {
    const provider = new ScriptedProvider(async function* () {
      yield [
        { kind: 'reasoning', text: 'hm' },
        { kind: 'text', text: 'a' },
      ] as const;
      yield { kind: 'text', text: 'b' } as const;
      yield [] as const;
      yield [
        { kind: 'text', text: 'c' },
        { kind: 'finish', reason: 'length' },
        { kind: 'usage', usage: { promptTokens: 1, completionTokens: 3, totalTokens: 4 } },
      ] as const;
    });
    const events = await collect(new CompletionService(provider, options));

    expect(events.map((event) => [event.type, event.seq, 'text' in event ? event.text : undefined])).toEqual([
      ['start', 0, undefined],
      ['reasoning', 1, 'hm'],
      ['token', 2, 'a'],
      ['token', 3, 'b'],
      ['token', 4, 'c'],
      ['done', 5, undefined],
    ]);
    expect(events[1].ts).toBe(events[2].ts);
    expect(events.at(-1)).toMatchObject({ finishReason: 'length', usage: { totalTokens: 4 } });
  });

  it('emits reasoning events before the tokens; ttftMs counts the first reasoning, reasoningMs runs to the first token', async () => {
    async function* thinking(): AsyncIterable<ProviderChunk> {
      yield { kind: 'reasoning', text: 'Let me ' };
      await new Promise((resolve) => setTimeout(resolve, 30));
      yield { kind: 'reasoning', text: 'think.' };
      await new Promise((resolve) => setTimeout(resolve, 30));
      yield { kind: 'text', text: 'Answer' };
      yield { kind: 'finish', reason: 'stop' };
      yield {
        kind: 'usage',
        usage: { promptTokens: 3, completionTokens: 9, totalTokens: 12, reasoningTokens: 7 },
      };
    }
    // The 30 ms pauses are the reasoning time under test, not a stall: deadlines far past them, so that a loaded
    // machine (a timer late by 100 ms during the full suite) cannot turn a pause into an idle timeout.
    const patient = { ...options, firstTokenTimeoutMs: 10_000, idleTimeoutMs: 10_000 };
    const events = await collect(new CompletionService(new ScriptedProvider(thinking), patient));

    expect(events.map((event) => [event.type, event.seq, 'text' in event ? event.text : undefined])).toEqual([
      ['start', 0, undefined],
      ['reasoning', 1, 'Let me '],
      ['reasoning', 2, 'think.'],
      ['token', 3, 'Answer'],
      ['done', 4, undefined],
    ]);
    const [start, firstReasoning, , firstToken, done] = events;
    if (done.type !== 'done') throw new Error(`ended with ${JSON.stringify(done)}`);
    expect(done.usage).toEqual({ promptTokens: 3, completionTokens: 9, totalTokens: 12, reasoningTokens: 7 });
    expect(done.timing.ttftMs).toBeCloseTo(firstReasoning.ts - start.ts, 6);
    expect(done.timing.reasoningMs).toBeCloseTo(firstToken.ts - firstReasoning.ts, 6);
    expect(done.timing.reasoningMs).toBeGreaterThanOrEqual(50);
  });

  it('leaves reasoningMs out when the model did not reason', async () => {
    const provider = new ScriptedProvider(() =>
      chunks({ kind: 'text', text: 'plain' }, { kind: 'finish', reason: 'stop' }),
    );
    const done = (await collect(new CompletionService(provider, options))).at(-1);
    expect(done).toMatchObject({ type: 'done', timing: { ttftMs: expect.any(Number) } });
    expect(done?.type === 'done' && 'reasoningMs' in done.timing).toBe(false);
  });

  it('a model that only reasons, slowly, does not hit the first-token timeout', async () => {
    async function* slowThinker(): AsyncIterable<ProviderChunk> {
      // Each gap is far under the idle timeout (1 s here: a loaded CI machine stretched a 60 ms gap past 100 ms);
      // together they pass the first-token timeout (200 ms), and load only makes them longer.
      for (let index = 0; index < 5; index++) {
        yield { kind: 'reasoning', text: `step ${index} ` };
        await new Promise((resolve) => setTimeout(resolve, 60));
      }
      yield { kind: 'text', text: 'done thinking' };
      yield { kind: 'finish', reason: 'stop' };
    }
    const settings = { ...options, idleTimeoutMs: 1000 };
    const events = await collect(new CompletionService(new ScriptedProvider(slowThinker), settings));
    expect(events.at(-1)).toMatchObject({ type: 'done', finishReason: 'stop' });
  });

  it('keeps a stream whose tokens come under the idle timeout apart, and times out after the last', async () => {
    async function* steadyThenSilent(signal: AbortSignal): AsyncIterable<ProviderChunk> {
      // Eight gaps of 40 ms: together over three idle timeouts (100 ms), each well under one.
      for (let index = 0; index < 8; index++) {
        yield { kind: 'text', text: `t${index} ` };
        await new Promise((resolve) => setTimeout(resolve, 40));
      }
      yield* hangs(signal);
    }
    const events = await collect(new CompletionService(new ScriptedProvider(steadyThenSilent), options));

    expect(events.map((event) => event.type)).toEqual(['start', ...Array(8).fill('token'), 'error']);
    const lastToken = events.at(-2);
    const error = events.at(-1);
    expect(error).toMatchObject({ error: { code: 'upstream_timeout' } });
    // Timers count whole milliseconds: the error comes no earlier than the idle timeout after the last token.
    expect((error?.ts ?? 0) - (lastToken?.ts ?? 0)).toBeGreaterThanOrEqual(options.idleTimeoutMs - 1);
  });

  it('emits start before the upstream answers', async () => {
    const provider = new ScriptedProvider((signal) => hangs(signal));
    const service = new CompletionService(provider, options);

    const first = await firstValueFrom(service.stream(request, { streamId: 's1' }));

    expect(first.type).toBe('start');
    expect(provider.signal?.aborted).toBe(true);
  });

  it('aborts the upstream request when the subscriber unsubscribes', async () => {
    const provider = new ScriptedProvider((signal) => hangs(signal, { kind: 'text', text: 'a' }));
    const seen: CompletionEvent[] = [];
    const subscription = new CompletionService(provider, options)
      .stream(request, { streamId: 's1' })
      .subscribe((event) => seen.push(event));
    await new Promise((resolve) => setImmediate(resolve));

    subscription.unsubscribe();

    expect(provider.signal?.aborted).toBe(true);
    expect(seen.map((event) => event.type)).toEqual(['start', 'token']);
  });

  it('turns an explicit cancel into done/cancelled and an upstream abort', async () => {
    const provider = new ScriptedProvider((signal) => hangs(signal, { kind: 'text', text: 'a' }));
    const cancel = new AbortController();
    const events = collect(new CompletionService(provider, options), 's1', cancel.signal);
    await new Promise((resolve) => setImmediate(resolve));

    cancel.abort();

    const done = (await events).at(-1);
    expect(done).toMatchObject({ type: 'done', seq: 2, finishReason: 'cancelled', usage: null });
    expect(provider.signal?.aborted).toBe(true);
  });

  it('ends with the provider error as an error event', async () => {
    const provider = new ScriptedProvider(async function* () {
      yield { kind: 'text', text: 'a' } as const;
      throw new UpstreamError('upstream_rate_limited', 'slow down', 1200);
    });
    const events = await collect(new CompletionService(provider, options));

    expect(events.at(-1)).toMatchObject({
      type: 'error',
      seq: 2,
      error: { code: 'upstream_rate_limited', message: 'slow down', retryable: true, retryAfterMs: 1200 },
    });
  });

  it('hides an unexpected failure behind a generic internal error, and logs it for the operator', async () => {
    const logged = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    const provider = new ScriptedProvider(async function* () {
      yield* [];
      throw new Error('secret details sk-12345');
    });
    try {
      const events = await collect(new CompletionService(provider, options));

      expect(events.at(-1)).toMatchObject({ type: 'error', error: { code: 'internal', retryable: false } });
      expect(JSON.stringify(events)).not.toContain('sk-12345');
      expect(logged).toHaveBeenCalledWith(expect.stringContaining('Error: secret details'));
    } finally {
      logged.mockRestore();
    }
  });

  it('times out when no token comes in time, and aborts the upstream', async () => {
    const provider = new ScriptedProvider((signal) => hangs(signal));
    const events = await collect(new CompletionService(provider, options));

    expect(events.at(-1)).toMatchObject({
      type: 'error',
      error: { code: 'upstream_timeout', retryable: true },
    });
    expect(provider.signal?.aborted).toBe(true);
  });

  it('times out when tokens stop mid-answer', async () => {
    const provider = new ScriptedProvider((signal) => hangs(signal, { kind: 'text', text: 'a' }));
    const events = await collect(new CompletionService(provider, options));

    expect(events.map((event) => event.type)).toEqual(['start', 'token', 'error']);
    expect(events.at(-1)).toMatchObject({ error: { code: 'upstream_timeout' } });
  });

  it('uses the model the request names', async () => {
    const provider = new ScriptedProvider(() => chunks({ kind: 'finish', reason: 'stop' }));
    const events = await lastValueFrom(
      new CompletionService(provider, options)
        .stream({ ...request, model: 'other' }, { streamId: 's' })
        .pipe(toArray()),
    );

    expect(events[0]).toMatchObject({ model: 'other' });
    expect(events.at(-1)).toMatchObject({ type: 'done', finishReason: 'stop', usage: null });
  });
});
