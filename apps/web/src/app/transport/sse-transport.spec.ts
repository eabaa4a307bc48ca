import type { CompletionEvent } from '@app/contracts';
import { firstValueFrom, toArray } from 'rxjs';
import { sseCompletionStream, sseResumedStream, type SseDependencies } from './sse-transport';
import { TransportError } from './transport-error';

const request = { messages: [{ role: 'user' as const, content: 'hi' }], streamId: 'stream-0001' };
const frame = (event: CompletionEvent) =>
  `id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
const start: CompletionEvent = { type: 'start', streamId: 'stream-0001', seq: 0, model: 'sim', ts: 1 };
const token = (seq: number, text: string): CompletionEvent => ({
  type: 'token',
  streamId: 'stream-0001',
  seq,
  text,
  ts: 2,
});
const done: CompletionEvent = {
  type: 'done',
  streamId: 'stream-0001',
  seq: 3,
  ts: 3,
  finishReason: 'stop',
  usage: null,
  timing: { ttftMs: 1, durationMs: 2 },
};

/** A streamed body cut into chunks at awkward places, as a network would. */
function sseResponse(chunks: string[], headers: Record<string, string> = {}): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      chunks.forEach((chunk) => controller.enqueue(encoder.encode(chunk)));
      controller.close();
    },
  });
  return new Response(body, {
    status: 200,
    headers: { 'Content-Type': 'text/event-stream', 'X-Stream-Id': 'stream-0001', ...headers },
  });
}

function problem(status: number, code: string): Response {
  return new Response(JSON.stringify({ status, code, title: code, detail: `${code} detail` }), {
    status,
    headers: { 'Content-Type': 'application/problem+json' },
  });
}

function dependencies(
  ...responses: Response[]
): SseDependencies & { calls: [string, RequestInit | undefined][] } {
  const calls: [string, RequestInit | undefined][] = [];
  return {
    calls,
    headers: (extra) => ({ ...extra, Authorization: 'Bearer t' }),
    fetch: async (input, init) => {
      calls.push([String(input), init]);
      const response = responses.shift();
      if (!response) throw new TypeError('no more responses');
      return response;
    },
  };
}

describe('sseCompletionStream', () => {
  it('posts the request and emits each event, across chunk boundaries, then completes', async () => {
    const text = frame(start) + ': ping\n\n' + frame(token(1, 'héllo\n')) + frame(token(2, '')) + frame(done);
    const deps = dependencies(sseResponse([text.slice(0, 7), text.slice(7, 100), text.slice(100)]));
    const events = await firstValueFrom(sseCompletionStream(request, deps).pipe(toArray()));
    expect(events.map((event) => event.type)).toEqual(['start', 'token', 'token', 'done']);
    expect(events[1]).toMatchObject({ text: 'héllo\n' });
    const [url, init] = deps.calls[0];
    expect(url).toBe('/api/completions/stream');
    expect(init?.method).toBe('POST');
    expect(JSON.parse(String(init?.body))).toEqual(request);
    expect(init?.headers).toMatchObject({ Authorization: 'Bearer t', 'Content-Type': 'application/json' });
  });

  it('turns a problem+json refusal into a TransportError carrying its detail', async () => {
    const refusal = new Response(
      JSON.stringify({
        type: 'about:blank',
        title: 'Unauthorized',
        status: 401,
        code: 'unauthorized',
        detail: 'Missing bearer token',
      }),
      { status: 401, headers: { 'Content-Type': 'application/problem+json' } },
    );
    const error = await firstValueFrom(sseCompletionStream(request, dependencies(refusal))).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TransportError);
    expect(error).toMatchObject({ code: 'unauthorized', message: 'Missing bearer token', retryable: false });
  });

  it('resumes after a dropped connection with Last-Event-ID', async () => {
    const deps = dependencies(
      sseResponse([frame(start), frame(token(1, 'a'))]),
      sseResponse([frame(token(2, 'b')), frame(done)]),
    );
    const events = await firstValueFrom(sseCompletionStream(request, deps).pipe(toArray()));
    expect(events.map((event) => event.seq)).toEqual([0, 1, 2, 3]);
    const [url, init] = deps.calls[1];
    expect(url).toBe('/api/completions/stream-0001/stream');
    expect(init?.headers).toMatchObject({ 'Last-Event-ID': '1' });
  });

  it('aborts the fetch when unsubscribed early', async () => {
    let signal: AbortSignal | undefined;
    const deps: SseDependencies = {
      headers: (extra) => extra,
      fetch: (_input, init) => {
        signal = init?.signal ?? undefined;
        return new Promise(() => undefined);
      },
    };
    sseCompletionStream(request, deps).subscribe().unsubscribe();
    expect(signal?.aborted).toBe(true);
  });

  it("hands the start response's resume token to the caller", async () => {
    const tokens: string[] = [];
    const deps = dependencies(sseResponse([frame(start), frame(done)], { 'X-Resume-Token': 'resume-1' }));
    await firstValueFrom(
      sseCompletionStream(request, deps, { resumeToken: (token) => tokens.push(token) }).pipe(toArray()),
    );
    expect(tokens).toEqual(['resume-1']);
  });
});

describe('sseResumedStream', () => {
  it('replays from the start with a GET and no Last-Event-ID, through the same parser', async () => {
    const text = frame(start) + frame(token(1, 'a')) + frame(token(2, 'b')) + frame(done);
    const deps = dependencies(sseResponse([text.slice(0, 30), text.slice(30)]));
    const events = await firstValueFrom(
      sseResumedStream({ streamId: 'stream-0001', lastSeq: -1 }, deps).pipe(toArray()),
    );
    expect(events.map((event) => event.seq)).toEqual([0, 1, 2, 3]);
    const [url, init] = deps.calls[0];
    expect(url).toBe('/api/completions/stream-0001/stream');
    expect(init?.method).toBeUndefined();
    expect(init?.headers).toMatchObject({ Authorization: 'Bearer t', Accept: 'text/event-stream' });
    expect(init?.headers).not.toHaveProperty('Last-Event-ID');
  });

  it('sends Last-Event-ID from a known seq, and resumes again after a drop', async () => {
    const deps = dependencies(sseResponse([frame(token(2, 'b'))]), sseResponse([frame(done)]));
    const events = await firstValueFrom(
      sseResumedStream({ streamId: 'stream-0001', lastSeq: 1 }, deps).pipe(toArray()),
    );
    expect(events.map((event) => event.seq)).toEqual([2, 3]);
    expect(deps.calls.map(([, init]) => (init?.headers as Record<string, string>)['Last-Event-ID'])).toEqual([
      '1',
      '2',
    ]);
  });

  it('reports an expired stream as not_found, once', async () => {
    const deps = dependencies(problem(404, 'not_found'));
    const error = await firstValueFrom(
      sseResumedStream({ streamId: 'stream-0001', lastSeq: -1 }, deps),
    ).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'not_found' });
    expect(deps.calls).toHaveLength(1);
  });

  it('falls back to the resume token when the credentials are refused', async () => {
    const deps = dependencies(problem(401, 'unauthorized'), sseResponse([frame(start), frame(done)]));
    const events = await firstValueFrom(
      sseResumedStream({ streamId: 'stream-0001', lastSeq: -1, resumeToken: 'a/b' }, deps).pipe(toArray()),
    );
    expect(events.map((event) => event.type)).toEqual(['start', 'done']);
    const [url, init] = deps.calls[1];
    expect(url).toBe('/api/completions/stream-0001/stream?resumeToken=a%2Fb');
    expect(init?.headers).not.toHaveProperty('Authorization');
  });

  it('keeps the first refusal when the resume token is refused too', async () => {
    const deps = dependencies(problem(404, 'not_found'), problem(401, 'unauthorized'));
    const error = await firstValueFrom(
      sseResumedStream({ streamId: 'stream-0001', lastSeq: -1, resumeToken: 'old' }, deps),
    ).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'not_found' });
    expect(deps.calls).toHaveLength(2);
  });
});
