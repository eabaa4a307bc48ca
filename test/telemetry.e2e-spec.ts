import type { CompletionEvent } from '@app/contracts';
import { SpanKind } from '@opentelemetry/api';
import OpenAI from 'openai';
import { connect, streamOver } from './support/socket-client';
import { type ExportedSpan, OtlpReceiver } from './support/otlp-receiver';
import { postStream } from './support/sse-client';
import { startTestApp } from './support/test-app';

/** A prompt no span, metric or resource may carry unless content capture is asked for. */
const SECRET_PROMPT = 'the-prompt-text-ZX81-must-never-be-exported';
const request = { messages: [{ role: 'user' as const, content: SECRET_PROMPT }] };
const INCOMING_TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const INCOMING_PARENT_ID = '00f067aa0ba902b7';
const incoming = (parentId = INCOMING_PARENT_ID) => `00-${INCOMING_TRACE_ID}-${parentId}-01`;

const OTEL_VARIABLES = ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_SERVICE_NAME', 'OTEL_METRIC_EXPORT_INTERVAL'];

/** Runs `work` against a gateway started with `env` added to the process's environment, then closes it. */
async function withGateway(env: Record<string, string>, work: (url: string) => Promise<void>): Promise<void> {
  const saved = OTEL_VARIABLES.map((name) => [name, process.env[name]] as const);
  Object.assign(process.env, env);
  try {
    const testApp = await startTestApp();
    try {
      await work(testApp.url);
    } finally {
      // Closing flushes what the SDK still holds to the receiver.
      await testApp.close();
    }
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

function describeSpans(spans: ExportedSpan[]): string {
  return JSON.stringify(
    spans.map(({ name, kind, traceId, spanId, parentSpanId }) => ({
      name,
      kind,
      traceId,
      spanId,
      parentSpanId,
    })),
    null,
    1,
  );
}

describe('OpenTelemetry export (OTLP/HTTP)', () => {
  const receiver = new OtlpReceiver();
  let endpoint: string;

  beforeAll(async () => {
    endpoint = await receiver.listen();
  });
  afterAll(() => receiver.close());
  beforeEach(() => receiver.clear());

  it('exports a server span per surface, keeping an incoming traceparent, and the GenAI metrics', async () => {
    let sseStreamId = '';
    let socketStreamId = '';
    await withGateway(
      { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_SERVICE_NAME: 'gateway-under-test' },
      async (url) => {
        const sse = await postStream(url, request, { headers: { traceparent: incoming() } });
        expect(sse.events.at(-1)?.type).toBe('done');
        sseStreamId = sse.headers.get('x-stream-id') ?? '';

        const socket = await connect(url);
        try {
          const run = await streamOver(socket, { ...request, traceparent: incoming('00f067aa0ba902b8') });
          expect(run.ack.ok).toBe(true);
          expect(run.events.at(-1)?.type).toBe('done');
          socketStreamId = run.ack.ok ? run.ack.streamId : '';
        } finally {
          socket.close();
        }

        const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
        const chunks = await client.chat.completions.create(
          { model: 'simulator', messages: request.messages, stream: true },
          { headers: { traceparent: incoming('00f067aa0ba902b9') } },
        );
        for await (const chunk of chunks) void chunk;
      },
    );

    const spans = receiver.spans;
    // OTLP numbers span kinds from 1 (SPAN_KIND_INTERNAL); the API from 0.
    const server = spans.filter((span) => span.kind === SpanKind.SERVER + 1);
    const byName = (name: string) => server.find((span) => span.name === name);
    const sseSpan = byName('POST /api/completions/stream');
    const socketSpan = byName('completion:start');
    const openaiSpan = byName('POST /v1/chat/completions');
    if (!sseSpan || !socketSpan || !openaiSpan) {
      throw new Error(`missing server spans in ${describeSpans(spans)}`);
    }
    // The incoming trace is kept: same trace id, the caller's span as parent.
    expect(sseSpan).toMatchObject({ traceId: INCOMING_TRACE_ID, parentSpanId: INCOMING_PARENT_ID });
    expect(socketSpan).toMatchObject({ traceId: INCOMING_TRACE_ID, parentSpanId: '00f067aa0ba902b8' });
    expect(openaiSpan).toMatchObject({ traceId: INCOMING_TRACE_ID, parentSpanId: '00f067aa0ba902b9' });
    expect(sseSpan.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/api/completions/stream',
      'http.response.status_code': 200,
      'llm_gateway.transport': 'sse',
      'llm_gateway.stream.id': sseStreamId,
    });
    expect(socketSpan.attributes).toMatchObject({
      'llm_gateway.transport': 'socket.io',
      'llm_gateway.stream.id': socketStreamId,
    });
    expect(openaiSpan.attributes).toMatchObject({
      'llm_gateway.transport': 'openai',
      'http.response.status_code': 200,
    });

    // One CLIENT span per upstream attempt, `chat {model}`, a child of its surface's server span, in its trace.
    const attempts = spans.filter((span) => span.kind === SpanKind.CLIENT + 1);
    for (const parent of [sseSpan, socketSpan, openaiSpan]) {
      const child = attempts.find((span) => span.parentSpanId === parent.spanId);
      if (!child) {
        throw new Error(`no attempt span under ${parent.name} in ${describeSpans(spans)}`);
      }
      expect(child).toMatchObject({ name: 'chat simulator', traceId: INCOMING_TRACE_ID });
      expect(child.attributes).toMatchObject({
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': 'openai',
        'gen_ai.request.model': 'simulator',
        'gen_ai.request.stream': true,
        'gen_ai.response.model': 'simulator',
        'gen_ai.response.finish_reasons': ['stop'],
      });
      if (parent !== openaiSpan) {
        // The /v1 client asked for no usage (`stream_options`), so its upstream sent none.
        expect(child.attributes['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
      }
      expect(child.attributes['gen_ai.response.time_to_first_chunk']).toBeGreaterThan(0);
    }

    // The GenAI client metrics, in the conventions' names and units, for the two streams of the registry.
    const metric = (name: string) => receiver.metrics.find((candidate) => candidate.name === name);
    const duration = metric('gen_ai.client.operation.duration');
    expect(duration?.unit).toBe('s');
    expect(duration?.points.reduce((total, point) => total + point.count, 0)).toBe(2);
    expect(duration?.points[0].attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'simulator',
      'gen_ai.request.model': 'simulator',
    });
    const usage = metric('gen_ai.client.token.usage');
    expect(usage?.unit).toBe('{token}');
    expect(new Set(usage?.points.map((point) => point.attributes['gen_ai.token.type']))).toEqual(
      new Set(['input', 'output']),
    );
    expect(metric('gen_ai.client.operation.time_to_first_chunk')?.unit).toBe('s');
    expect(metric('gen_ai.client.operation.time_per_output_chunk')?.points[0].count).toBeGreaterThan(0);

    // Never content: the prompt appears in no exported byte.
    expect(receiver.bodies.length).toBeGreaterThan(0);
    expect(receiver.bodies.some((body) => body.includes(SECRET_PROMPT))).toBe(false);
  });

  it('puts a resume in the trace its traceparent names, with a resume event', async () => {
    await withGateway({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint }, async (url) => {
      const started = await postStream(url, request);
      const streamId = started.headers.get('x-stream-id') ?? '';
      const resumed = await fetch(`${url}/api/completions/${streamId}/stream`, {
        headers: { 'last-event-id': '1', traceparent: incoming() },
      });
      expect(resumed.status).toBe(200);
      await resumed.text();
    });
    const resume = receiver.spans.find((span) => span.name === 'GET /api/completions/{streamId}/stream');
    if (!resume) throw new Error(`no resume span in ${describeSpans(receiver.spans)}`);
    expect(resume).toMatchObject({ traceId: INCOMING_TRACE_ID, parentSpanId: INCOMING_PARENT_ID });
    expect(resume.events).toEqual([
      { name: 'llm_gateway.resume', attributes: { 'llm_gateway.resume.after_seq': 1 } },
    ]);
  });

  it('exports nothing when no OTEL_* switch is set', async () => {
    const events: CompletionEvent[] = [];
    await withGateway({}, async (url) => {
      const sse = await postStream(url, request, { headers: { traceparent: incoming() } });
      events.push(...sse.events);
    });
    expect(events.at(-1)?.type).toBe('done');
    expect(receiver.paths).toEqual([]);
  });
});
