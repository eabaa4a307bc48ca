import type { DoneEvent, ProblemDetails } from '@app/contracts';
import { REQUEST_LIMITS } from '@app/contracts';
import { postStream, readStream, textOf } from './support/sse-client';
import { eventually, startTestApp, type TestApp } from './support/test-app';

const user = (content: string) => ({ messages: [{ role: 'user' as const, content }] });

describe('SSE transport (POST /api/completions/stream)', () => {
  let testApp: TestApp;

  beforeAll(async () => {
    testApp = await startTestApp();
  });
  afterAll(() => testApp.close());

  it('streams the framing, headers and seq the contract fixes', async () => {
    const result = await postStream(testApp.url, user('Tell me about streaming.'));

    expect(result.status).toBe(200);
    expect(result.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(result.headers.get('cache-control')).toBe('no-cache, no-transform');
    expect(result.headers.get('x-accel-buffering')).toBe('no');
    const streamId = result.headers.get('x-stream-id');
    expect(streamId).toMatch(/^[0-9a-f-]{36}$/);

    // Every block is exactly `id: <seq>\nevent: <type>\ndata: <json>\n\n`.
    const blocks = result.raw.split('\n\n').filter(Boolean);
    expect(blocks.length).toBe(result.events.length);
    blocks.forEach((block, index) => {
      const event = result.events[index];
      expect(block).toBe(`id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}`);
    });

    const { events } = result;
    expect(events.map((event) => event.seq)).toEqual(events.map((_, index) => index));
    expect(events.every((event) => event.streamId === streamId)).toBe(true);
    expect(events[0]).toMatchObject({ type: 'start', seq: 0, model: 'simulator' });
    expect(events.slice(1, -1).every((event) => event.type === 'token')).toBe(true);
    const done = events.at(-1) as DoneEvent;
    expect(done).toMatchObject({ type: 'done', finishReason: 'stop' });
    expect(done.usage?.completionTokens).toBeGreaterThan(0);
    expect(done.usage?.totalTokens).toBe(
      (done.usage?.promptTokens ?? 0) + (done.usage?.completionTokens ?? 0),
    );
    expect(done.timing.durationMs).toBeGreaterThanOrEqual(done.timing.ttftMs);
    // ts is the server's clock, non-decreasing along the stream.
    for (let index = 1; index < events.length; index += 1) {
      expect(events[index].ts).toBeGreaterThanOrEqual(events[index - 1].ts);
    }
  });

  it('delivers exactly the text the simulator generates', async () => {
    const request = user('Explain backpressure in two paragraphs.');
    const upstream = await fetch(`${testApp.simulator.baseUrl}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...testApp.simulator.headers },
      body: JSON.stringify({ model: 'simulator', messages: request.messages }),
    });
    const expected = ((await upstream.json()) as { choices: { message: { content: string } }[] }).choices[0]
      .message.content;

    const { events } = await postStream(testApp.url, request);

    expect(expected.length).toBeGreaterThan(50);
    expect(textOf(events)).toBe(expected);
  });

  it('keeps multi-byte characters, newlines and blank lines byte for byte', async () => {
    const text = 'héllo wörld — “quoted” 🌍🚀 世界你好\r\n\nline two\n\n\n  indented\tTab ∑ ∫ 👩‍👩‍👧';
    const { events } = await postStream(testApp.url, user(`[sim echo] ${text}`));

    expect(textOf(events)).toBe(text);
  });

  it('ends with finishReason length when maxTokens cuts the answer', async () => {
    const { events } = await postStream(testApp.url, { ...user('[sim tokens=50]'), maxTokens: 5 });

    expect(events.filter((event) => event.type === 'token').length).toBeLessThanOrEqual(5);
    expect(events.at(-1)).toMatchObject({
      type: 'done',
      finishReason: 'length',
      usage: { completionTokens: 5 },
    });
  });

  it('cancels on DELETE: done/cancelled, and the simulator sees the upstream abort at once', async () => {
    const abortedBefore = testApp.simulator.stats().aborted;
    let cancelled: Promise<Response> | undefined;
    const result = await postStream(testApp.url, user('[sim tokens=400 tps=40]'), {
      onEvent: (event) => {
        if (event.type === 'token' && event.seq === 3) {
          cancelled = fetch(`${testApp.url}/api/completions/${event.streamId}`, { method: 'DELETE' });
        }
      },
    });

    expect((await cancelled)?.status).toBe(204);
    expect(result.events.at(-1)).toMatchObject({ type: 'done', finishReason: 'cancelled', usage: null });
    expect(result.events.filter((event) => event.type === 'token').length).toBeLessThan(400);
    await eventually(() => testApp.simulator.stats().aborted > abortedBefore, 2000);
  });

  it('answers 404 problem+json to a DELETE of an unknown stream', async () => {
    const response = await fetch(`${testApp.url}/api/completions/no-such-stream`, { method: 'DELETE' });

    expect(response.status).toBe(404);
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await response.json()).toMatchObject({ status: 404, code: 'not_found' });
  });

  it('aborts the upstream when the client drops the connection (grace 0)', async () => {
    const abortedBefore = testApp.simulator.stats().aborted;
    const controller = new AbortController();
    await postStream(testApp.url, user('[sim tokens=400 tps=40]'), {
      signal: controller.signal,
      onEvent: (event) => {
        if (event.type === 'token' && event.seq === 2) {
          controller.abort();
        }
      },
    }).catch((error: unknown) => expect((error as Error).name).toBe('AbortError'));

    await eventually(() => testApp.simulator.stats().aborted > abortedBefore, 2000);
    await eventually(() => testApp.simulator.stats().active === 0, 2000);
  });

  // Upstream faults, before and after the first token, on both transports: upstream-faults.e2e-spec.ts.

  describe('refusals before streaming are problem+json with the contract code', () => {
    async function refusal(
      response: Promise<Response>,
    ): Promise<{ status: number; problem: ProblemDetails }> {
      const resolved = await response;
      expect(resolved.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      return { status: resolved.status, problem: (await resolved.json()) as ProblemDetails };
    }
    const post = (body: string, contentType = 'application/json') =>
      fetch(`${testApp.url}/api/completions/stream`, {
        method: 'POST',
        headers: { 'content-type': contentType },
        body,
      });

    it.each([
      ['empty messages', { messages: [] }],
      ['no messages', { model: 'x' }],
      ['an unknown field', { ...user('hi'), max_tokens: 5 }],
      ['a wrong role', { messages: [{ role: 'robot', content: 'hi' }] }],
      ['a non-string content', { messages: [{ role: 'user', content: 42 }] }],
      ['a temperature out of range', { ...user('hi'), temperature: 9 }],
      ['maxTokens over the cap', { ...user('hi'), maxTokens: REQUEST_LIMITS.maxTokensCap + 1 }],
      ['a malformed streamId', { ...user('hi'), streamId: 'no spaces allowed' }],
      ['an array body', [user('hi')]],
      ['a __proto__ key', JSON.parse('{"messages":[{"role":"user","content":"hi"}],"__proto__":{"x":1}}')],
    ])('400 invalid_request for %s', async (_name, body) => {
      const { status, problem } = await refusal(post(JSON.stringify(body)));

      expect(status).toBe(400);
      expect(problem).toMatchObject({ status: 400, code: 'invalid_request', title: expect.any(String) });
      expect(problem.detail).toEqual(expect.any(String));
    });

    it('400 for a body that is not JSON', async () => {
      const { status, problem } = await refusal(post('{"messages": [', 'application/json'));

      expect(status).toBe(400);
      expect(problem.code).toBe('invalid_request');
    });

    it('415 for a body that is not application/json', async () => {
      const { status, problem } = await refusal(post('hello', 'text/plain'));

      expect(status).toBe(415);
      expect(problem.code).toBe('unsupported_media_type');
    });

    it('413 for a body over the limit, refused rather than truncated', async () => {
      const content = 'x'.repeat(REQUEST_LIMITS.maxBodyBytes);
      const { status, problem } = await refusal(post(JSON.stringify(user(content))));

      expect(status).toBe(413);
      expect(problem.code).toBe('payload_too_large');
    });

    it('400 for a message longer than the content limit', async () => {
      const { status } = await refusal(
        post(JSON.stringify(user('y'.repeat(REQUEST_LIMITS.maxContentLength + 1)))),
      );

      expect(status).toBe(400);
    });

    it('400 for a client-chosen streamId already in use', async () => {
      const streamId = 'client-chosen-id-1';
      const first = await postStream(testApp.url, { ...user('hi'), streamId });
      expect(first.headers.get('x-stream-id')).toBe(streamId);

      const { status } = await refusal(post(JSON.stringify({ ...user('hi'), streamId })));
      expect(status).toBe(400);
    });

    it('nothing malformed reaches the upstream', async () => {
      const requestsBefore = testApp.simulator.stats().requests;
      await refusal(post(JSON.stringify({ messages: [] })));
      await refusal(post('nope', 'text/plain'));

      expect(testApp.simulator.stats().requests).toBe(requestsBefore);
    });
  });

  it('serves GET /api/time as epoch milliseconds', async () => {
    const before = Date.now();
    const response = await fetch(`${testApp.url}/api/time`);
    const { ts } = (await response.json()) as { ts: number };

    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(ts).toBeGreaterThanOrEqual(before - 5);
    expect(ts).toBeLessThanOrEqual(Date.now() + 5);
  });

  it('resumes with Last-Event-ID: the events after it, no gap, no duplicate', async () => {
    const full = await postStream(testApp.url, user('[sim tokens=30]'));
    const streamId = full.headers.get('x-stream-id') as string;

    const resumed = await readStream(
      await fetch(`${testApp.url}/api/completions/${streamId}/stream`, {
        headers: { 'last-event-id': '10' },
      }),
    );

    expect(resumed.status).toBe(200);
    expect(resumed.events).toEqual(full.events.slice(11));
  });
});
