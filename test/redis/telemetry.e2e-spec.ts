import type { CompletionEvent } from '@app/contracts';
import { OtlpReceiver } from '../support/otlp-receiver';
import { startRedisServer, type RedisServer, sharedDeployment } from '../support/redis-server';
import { readStream } from '../support/sse-client';
import { startTestApp, type TestApp, whenReady } from '../support/test-app';

const KEY = 'key-trace-7f3a';
const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const START_PARENT = 'b7ad6b7169203331';
const RESUME_PARENT = 'b7ad6b7169203332';
const ANSWER = 'a traced answer that outlives its first connection '.repeat(3).trim();

/**
 * A stream started on one instance and resumed on another is one trace: each request's server span joins the
 * trace its `traceparent` names (the client sends the run's again with the resume), whichever instance serves it.
 */
describe('tracing across instances on Redis', () => {
  let redis: RedisServer;
  let a: TestApp;
  let b: TestApp;
  const receiver = new OtlpReceiver();
  const saved = process.env.OTEL_EXPORTER_OTLP_ENDPOINT;

  beforeAll(async () => {
    redis = await startRedisServer();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = await receiver.listen();
    const env = { ...sharedDeployment(redis.url, KEY), STREAM_RESUME_GRACE_MS: '10000' };
    a = await startTestApp(env);
    b = await startTestApp(env);
    await whenReady(a.url, b.url);
  });
  afterAll(async () => {
    if (saved === undefined) delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    else process.env.OTEL_EXPORTER_OTLP_ENDPOINT = saved;
    await receiver.close();
    await redis?.close();
  });

  it('puts the start on one instance and the resume on another in the same trace', async () => {
    const cut = new AbortController();
    const started = await fetch(`${a.url}/api/completions/stream`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${KEY}`,
        traceparent: `00-${TRACE_ID}-${START_PARENT}-01`,
      },
      body: JSON.stringify({ messages: [{ role: 'user', content: `[sim echo tps=40] ${ANSWER}` }] }),
      signal: cut.signal,
    });
    const streamId = started.headers.get('x-stream-id') as string;
    const first: CompletionEvent[] = [];
    let cutNow: () => void = () => undefined;
    const twoTokens = new Promise<void>((resolve) => (cutNow = resolve));
    const reading = readStream(started, (event) => {
      first.push(event);
      if (first.filter((candidate) => candidate.type === 'token').length === 2) cutNow();
    }).catch(() => undefined);
    await twoTokens;
    cut.abort();
    await reading;

    const lastSeq = first.at(-1)?.seq ?? -1;
    const resumed = await fetch(`${b.url}/api/completions/${streamId}/stream`, {
      headers: {
        authorization: `Bearer ${KEY}`,
        'last-event-id': String(lastSeq),
        traceparent: `00-${TRACE_ID}-${RESUME_PARENT}-01`,
      },
    });
    const rest = await readStream(resumed);
    expect(rest.events.at(-1)?.type).toBe('done');

    // Closing both flushes the one SDK of this process (shared by the two apps) to the receiver.
    await a.close();
    await b.close();
    const start = receiver.spans.find((span) => span.name === 'POST /api/completions/stream');
    const resume = receiver.spans.find((span) => span.name === 'GET /api/completions/{streamId}/stream');
    if (!start || !resume) {
      throw new Error(`spans missing: ${JSON.stringify(receiver.spans.map((span) => span.name))}`);
    }
    expect(start).toMatchObject({ traceId: TRACE_ID, parentSpanId: START_PARENT });
    expect(resume).toMatchObject({ traceId: TRACE_ID, parentSpanId: RESUME_PARENT });
    expect(start.attributes['llm_gateway.stream.id']).toBe(streamId);
    expect(resume.attributes['llm_gateway.stream.id']).toBe(streamId);
    expect(resume.events).toEqual([
      { name: 'llm_gateway.resume', attributes: { 'llm_gateway.resume.after_seq': lastSeq } },
    ]);
  });
});
