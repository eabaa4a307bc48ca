import type { CompletionEvent } from '@app/contracts';
import { once } from 'node:events';
import { lastValueFrom, toArray } from 'rxjs';
import type { CompletionModuleOptions } from './completion.module-definition';
import type { ProviderChunk } from './completion-provider';
import { CompletionService } from './completion.service';
import { ChunkDecoder, OpenAiCompatibleProvider, retryAfterMs } from './openai-compatible.provider';
import { Upstream } from './testing/upstream';
import { UpstreamError } from './upstream.error';

const encoder = new TextEncoder();
const bytes = (piece: string | Uint8Array) => (typeof piece === 'string' ? encoder.encode(piece) : piece);

const delta = (content: string | null, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish }] })}\n\n`;
const chunk = (content: string) => delta(content);
const stop = delta(null, 'stop');

const request = { streamId: 's', model: 'm', messages: [{ role: 'user' as const, content: 'hi' }] };

/**
 * A provider whose upstream answers, through the SDK, with a standard web body made of exactly these pieces, one
 * piece per read (so a piece can split an event or a character), and whose `cancel` is reported.
 */
function providerOver(
  pieces: (string | Uint8Array)[],
  seen: { cancel?: () => void; end?: () => void } = {},
): OpenAiCompatibleProvider {
  return new OpenAiCompatibleProvider({
    baseURL: 'http://upstream.test/v1',
    maxRetries: 0,
    fetch: async () => {
      const queue = [...pieces];
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          const piece = queue.shift();
          if (piece === undefined) {
            controller.close();
            seen.end?.();
          } else {
            controller.enqueue(bytes(piece));
          }
        },
        cancel: seen.cancel,
      });
      return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
    },
  });
}

/** The batches a stream yields, and the error it ended with. */
async function batchesOf(
  provider: OpenAiCompatibleProvider,
): Promise<{ batches: ProviderChunk[][]; failure?: unknown }> {
  const batches: ProviderChunk[][] = [];
  try {
    for await (const batch of provider.stream(request, new AbortController().signal)) {
      batches.push(batch);
    }
  } catch (failure) {
    return { batches, failure };
  }
  return { batches };
}

const texts = (batches: ProviderChunk[][]) =>
  batches.flat().flatMap((piece) => (piece.kind === 'text' ? [piece.text] : []));

describe('ChunkDecoder: one read of the body in, the chunks it completed out', () => {
  const contents = (chunks: { choices: { delta?: { content?: string | null } }[] }[]) =>
    chunks.map((parsed) => parsed.choices[0]?.delta?.content);

  it('answers every chunk of a read that holds several, in one batch', () => {
    const decoder = new ChunkDecoder(new Headers());

    expect(contents(decoder.feed(bytes(`${chunk('a')}${chunk('b')}: ping\n\n${chunk('c')}`)))).toEqual([
      'a',
      'b',
      'c',
    ]);
  });

  it('answers a chunk split across reads from the read that ends it, a split character included', () => {
    const decoder = new ChunkDecoder(new Headers());
    const wire = bytes(`${chunk('a')}${chunk('🚀é')}`);
    const cut = wire.length - 12; // inside the second event, in its JSON

    expect(contents(decoder.feed(wire.slice(0, cut)))).toEqual(['a']);
    expect(contents(decoder.feed(wire.slice(cut, cut + 1)))).toEqual([]);
    expect(contents(decoder.feed(wire.slice(cut + 1)))).toEqual(['🚀é']);
  });

  it('stops at a [DONE] in the middle of a read: the chunks before it count, nothing after', () => {
    const decoder = new ChunkDecoder(new Headers());

    expect(contents(decoder.feed(bytes(`${chunk('a')}data: [DONE]\n\n${chunk('after')}`)))).toEqual(['a']);
    expect(decoder.done).toBe(true);
    expect(decoder.feed(bytes(chunk('later')))).toEqual([]);
  });

  it('keeps the chunks before an error object of the same read, and the error as its failure', () => {
    const decoder = new ChunkDecoder(new Headers());

    expect(
      contents(decoder.feed(bytes(`${chunk('a')}data: {"error":{"message":"overloaded"}}\n\n${chunk('b')}`))),
    ).toEqual(['a']);
    expect(decoder.failure).toMatchObject({ error: { message: 'overloaded' } });
  });
});

describe('OpenAiCompatibleProvider.stream: one batch per read of the upstream body', () => {
  it('yields one batch per read, whatever the network split, multi-byte characters included, and stops at [DONE]', async () => {
    const wire = bytes(
      `${chunk('héllo')}${chunk(' 🚀')}: keep-alive\n\n${chunk('!')}${stop}data: [DONE]\n\n${chunk('after done')}`,
    );
    // Split every 7 bytes: lines, events and UTF-8 sequences all break across reads.
    const pieces = Array.from({ length: Math.ceil(wire.length / 7) }, (_, index) =>
      wire.slice(index * 7, index * 7 + 7),
    );

    const { batches, failure } = await batchesOf(providerOver(pieces));

    expect(failure).toBeUndefined();
    expect(texts(batches)).toEqual(['héllo', ' 🚀', '!']);
    expect(batches.every((batch) => batch.length === 1)).toBe(true);
    expect(batches.at(-1)).toEqual([{ kind: 'finish', reason: 'stop' }]);
  });

  it('yields the chunks of one read together, and nothing after a [DONE] in the middle of a read', async () => {
    const usage = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [], usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } })}\n\n`;

    const { batches, failure } = await batchesOf(
      providerOver([chunk('a'), `${chunk('b')}${chunk('c')}${stop}${usage}data: [DONE]\n\n${chunk('x')}`]),
    );

    expect(failure).toBeUndefined();
    expect(batches).toEqual([
      [{ kind: 'text', text: 'a' }],
      [
        { kind: 'text', text: 'b' },
        { kind: 'text', text: 'c' },
        { kind: 'finish', reason: 'stop' },
        { kind: 'usage', usage: { promptTokens: 1, completionTokens: 2, totalTokens: 3 } },
      ],
    ]);
  });

  it('hands on what came before an error object in the same read, then fails mid-stream', async () => {
    const { batches, failure } = await batchesOf(
      providerOver([`${chunk('a')}data: {"error":{"message":"overloaded"}}\n\n${chunk('b')}`]),
    );

    expect(texts(batches)).toEqual(['a']);
    expect(failure).toBeInstanceOf(UpstreamError);
    expect(failure).toMatchObject({
      code: 'upstream_unavailable',
      message: 'The model reported an error mid-stream.',
    });
  });

  it('hands on what came before an unknown finish reason in the same read, then fails', async () => {
    const { batches, failure } = await batchesOf(providerOver([`${chunk('a')}${delta('b', 'mystery')}`]));

    expect(texts(batches)).toEqual(['a', 'b']);
    expect(failure).toMatchObject({
      code: 'upstream_protocol',
      message: 'The model sent an unknown finish reason.',
    });
  });

  it('fails with upstream_protocol on data that is not JSON', async () => {
    const { failure } = await batchesOf(providerOver([chunk('a'), 'data: {"choices": [\n\n']));

    expect(failure).toMatchObject({
      code: 'upstream_protocol',
      message: 'The model sent a malformed stream.',
    });
  });

  it('fails with upstream_protocol when the body ends without a finish', async () => {
    const { batches, failure } = await batchesOf(providerOver([chunk('a')]));

    expect(texts(batches)).toEqual(['a']);
    expect(failure).toMatchObject({
      code: 'upstream_protocol',
      message: 'The model stream ended without a finish reason.',
    });
  });

  it('reads the rest of the body after [DONE] instead of cancelling it, so the connection is kept', async () => {
    let cancelled = false;
    let ended!: () => void;
    const drained = new Promise<void>((resolve) => (ended = resolve));
    const provider = providerOver([`${chunk('a')}${stop}`, 'data: [DONE]\n\n', ': trailing comment\n\n'], {
      cancel: () => (cancelled = true),
      end: () => ended(),
    });

    const { batches, failure } = await batchesOf(provider);

    expect(failure).toBeUndefined();
    expect(texts(batches)).toEqual(['a']);
    await drained;
    expect(cancelled).toBe(false);
  });

  it('cancels the body when its reader stops before the end', async () => {
    let cancelled!: () => void;
    const cancel = new Promise<void>((resolve) => (cancelled = resolve));
    const provider = providerOver(
      Array.from({ length: 100 }, () => chunk('again')),
      { cancel: () => cancelled() },
    );
    for await (const batch of provider.stream(request, new AbortController().signal)) {
      expect(batch).toEqual([{ kind: 'text', text: 'again' }]);
      break;
    }

    await cancel;
  });
});

describe('CompletionService over the default provider and a real upstream', () => {
  const options: CompletionModuleOptions = {
    defaultModel: 'm',
    firstTokenTimeoutMs: 5000,
    idleTimeoutMs: 5000,
    openai: { maxRetries: 0 },
  };
  let upstream: Upstream;
  beforeEach(async () => {
    // Answers one read with several chunks, then holds the stream open.
    upstream = await Upstream.start((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write(`${chunk('a')}${chunk('b')}${chunk('c')}`);
    });
  });
  afterEach(() => upstream.stop());

  function serviceOf(): CompletionService {
    return new CompletionService(
      new OpenAiCompatibleProvider({ baseURL: upstream.url, maxRetries: 0 }),
      options,
    );
  }

  /** Subscribes, and resolves once `count` events came. */
  function follow(events: ReturnType<CompletionService['stream']>, count: number) {
    const seen: CompletionEvent[] = [];
    let reached!: () => void;
    const enough = new Promise<void>((resolve) => (reached = resolve));
    const subscription = events.subscribe((event) => {
      seen.push(event);
      if (seen.length === count) reached();
    });
    return { seen, subscription, enough };
  }

  it('emits the chunks of one read as events in order, sharing their ts; unsubscribing closes the upstream connection', async () => {
    const { seen, subscription, enough } = follow(
      serviceOf().stream({ messages: request.messages }, { streamId: 's' }),
      4,
    );
    await enough;
    const closed = once(upstream.sockets[0], 'close');

    subscription.unsubscribe();

    await closed;
    expect(seen.map((event) => [event.type, event.seq, 'text' in event ? event.text : undefined])).toEqual([
      ['start', 0, undefined],
      ['token', 1, 'a'],
      ['token', 2, 'b'],
      ['token', 3, 'c'],
    ]);
    expect(new Set(seen.slice(1).map((event) => event.ts)).size).toBe(1);
  });

  it("uses the caller's controller as the upstream's: aborting it ends with done/cancelled and closes the connection", async () => {
    const controller = new AbortController();
    const events = lastValueFrom(
      serviceOf().stream({ messages: request.messages }, { streamId: 's', controller }).pipe(toArray()),
    );
    while (upstream.sockets.length === 0) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    const closed = once(upstream.sockets[0], 'close');

    controller.abort();

    expect((await events).at(-1)).toMatchObject({ type: 'done', finishReason: 'cancelled', usage: null });
    await closed;
  });

  it("aborts the caller's controller when the subscription ends before the upstream's end", async () => {
    const controller = new AbortController();
    const { subscription, enough } = follow(
      serviceOf().stream({ messages: request.messages }, { streamId: 's', controller }),
      2,
    );
    await enough;
    const closed = once(upstream.sockets[0], 'close');

    subscription.unsubscribe();

    expect(controller.signal.aborted).toBe(true);
    await closed;
  });
});

describe('OpenAiCompatibleProvider.chatCompletions: the passthrough options', () => {
  /** A provider whose upstream answers `{}`, and the headers of every request it was sent. */
  function recording(): { provider: OpenAiCompatibleProvider; sent: Headers[] } {
    const sent: Headers[] = [];
    const provider = new OpenAiCompatibleProvider({
      baseURL: 'http://upstream.test/v1',
      maxRetries: 0,
      fetch: async (_url: string | URL | Request, init?: RequestInit) => {
        sent.push(new Headers(init?.headers));
        return new Response('{}', { headers: { 'content-type': 'application/json' } });
      },
    });
    return { provider, sent };
  }
  const body = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };

  // The relay sets `maxResponseBytes`, the router's attempts `headers`: one must never be taken for the other.
  it('sends `headers` with the request, and never `maxResponseBytes` as one', async () => {
    const { provider, sent } = recording();
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

    await provider.chatCompletions(body, new AbortController().signal, { headers: { traceparent } });
    const capped = await provider.chatCompletions(body, new AbortController().signal, {
      maxResponseBytes: 65_536,
    });

    expect(sent.map((headers) => headers.get('traceparent'))).toEqual([traceparent, null]);
    expect([...sent[1].keys()].filter((name) => /max|bytes/i.test(name))).toEqual([]);
    // The body is handed over unread: the cap is the reader's to apply.
    expect(capped.bodyUsed).toBe(false);
  });
});

describe('retryAfterMs', () => {
  const headers = (init: Record<string, string>) => new Headers(init);

  it('prefers retry-after-ms', () => {
    expect(retryAfterMs(headers({ 'retry-after-ms': '1500', 'retry-after': '9' }))).toBe(1500);
  });

  it('reads retry-after in seconds', () => {
    expect(retryAfterMs(headers({ 'retry-after': '2' }))).toBe(2000);
  });

  it('reads retry-after as an HTTP date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfterMs(headers({ 'retry-after': 'Thu, 01 Jan 2026 00:00:03 GMT' }), now)).toBe(3000);
  });

  it('is undefined when absent or unreadable', () => {
    expect(retryAfterMs(undefined)).toBeUndefined();
    expect(retryAfterMs(headers({ 'retry-after': 'soon' }))).toBeUndefined();
  });
});
