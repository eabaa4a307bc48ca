import type { CompletionEvent, CompletionRequest, DoneEvent, ErrorEvent } from '@app/contracts';
import { postStream } from './support/sse-client';
import { type CompletionClient, connect, streamOver } from './support/socket-client';
import { eventually, startTestApp, type TestApp } from './support/test-app';

const user = (content: string): CompletionRequest => ({ messages: [{ role: 'user', content }] });

type Ending = { error: Partial<ErrorEvent['error']> } | { done: Partial<DoneEvent> };

/**
 * Every simulator fault, before the first token and after some, with the outcome the contract gives it:
 * `[prompt, tokens the client gets first, how the stream ends]`.
 */
const FAULTS: [string, number, Ending][] = [
  // Before the first token: the upstream answers with an HTTP error, or breaks before any content.
  [
    '[sim fault=rate_limit retry_after_ms=1500]',
    0,
    { error: { code: 'upstream_rate_limited', retryable: true, retryAfterMs: 1500 } },
  ],
  ['[sim fault=server_error]', 0, { error: { code: 'upstream_unavailable', retryable: true } }],
  ['[sim fault=unavailable]', 0, { error: { code: 'upstream_unavailable', retryable: true } }],
  ['[sim fault=unauthorized]', 0, { error: { code: 'upstream_rejected', retryable: false } }],
  ['[sim fault=bad_request]', 0, { error: { code: 'upstream_rejected', retryable: false } }],
  ['[sim fault=drop after=0]', 0, { error: { code: 'upstream_unavailable', retryable: true } }],
  ['[sim fault=malformed after=0]', 0, { error: { code: 'upstream_protocol', retryable: false } }],
  ['[sim fault=stall after=0]', 0, { error: { code: 'upstream_timeout', retryable: true } }],
  ['[sim fault=content_filter after=0]', 0, { done: { finishReason: 'content_filter' } }],
  // After the first token: what was sent stays sent; with no attempt left to continue the answer (this app allows
  // one attempt), the stream ends with upstream_interrupted (v1.2), never as a whole answer. upstream-routing
  // covers the continuation itself.
  ['[sim fault=drop after=3]', 3, { error: { code: 'upstream_interrupted', retryable: true } }],
  ['[sim fault=malformed after=3]', 3, { error: { code: 'upstream_interrupted', retryable: true } }],
  ['[sim fault=stall after=2]', 2, { error: { code: 'upstream_interrupted', retryable: true } }],
  ['[sim fault=content_filter after=2]', 2, { done: { finishReason: 'content_filter' } }],
];

describe.each(['sse', 'socket.io'])(
  'upstream faults over %s: the contract outcome, then business as usual',
  (transport) => {
    let testApp: TestApp;
    let socket: CompletionClient;

    const stream = async (request: CompletionRequest): Promise<CompletionEvent[]> =>
      transport === 'sse'
        ? (await postStream(testApp.url, request)).events
        : (await streamOver(socket, request)).events;

    beforeAll(async () => {
      // Short timeouts, so that the stalls end quickly.
      testApp = await startTestApp({
        UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: '800',
        UPSTREAM_IDLE_TIMEOUT_MS: '400',
      });
      socket = await connect(testApp.url);
    });
    afterAll(async () => {
      socket.disconnect();
      await testApp.close();
    });

    it.each(FAULTS)('%s: %i tokens, then the contract ending', async (prompt, tokens, ending) => {
      const events = await stream(user(prompt));

      expect(events[0]).toMatchObject({ type: 'start', seq: 0 });
      expect(events.filter((event) => event.type === 'token')).toHaveLength(tokens);
      expect(events.map((event) => event.seq)).toEqual(events.map((_, index) => index));
      const terminal = events.filter((event) => event.type === 'done' || event.type === 'error');
      expect(terminal).toEqual([events.at(-1)]);
      if ('error' in ending) {
        expect(events.at(-1)).toMatchObject({
          type: 'error',
          error: { ...ending.error, message: expect.any(String) },
        });
      } else {
        expect(events.at(-1)).toMatchObject({ type: 'done', ...ending.done });
      }
      // No upstream request is left open, and the next request is served normally.
      await eventually(() => testApp.simulator.stats().active === 0, 3000);
      expect((await stream(user('and now a normal answer'))).at(-1)).toMatchObject({
        type: 'done',
        finishReason: 'stop',
      });
    });
  },
);
