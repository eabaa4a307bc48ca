import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace';
import { runInTrace, startServerSpan } from './stream-trace';
import { telemetry } from './telemetry';
import { capturingContent, startAttempt, traceHeaders } from './upstream-attempt';

const ON = { OTEL_TRACES_EXPORTER: 'otlp', OTEL_METRICS_EXPORTER: 'none' };
const attempt = { deployment: 'primary', providerName: 'openai', requestModel: 'gpt-4o-mini', stream: true };
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;

describe('startAttempt', () => {
  describe('with telemetry off', () => {
    it('hands out one shared no-op and no trace headers', () => {
      const first = startAttempt(attempt);
      expect(startAttempt(attempt)).toBe(first);
      first.firstChunk();
      first.routed({ reason: 'fallback', model: 'm', deployment: 'd' });
      first.end({ responseModel: 'gpt-4o-mini' });
      expect(first.traceHeaders()).toEqual({});
      expect(traceHeaders()).toEqual({});
      expect(capturingContent()).toBe(false);
    });
  });

  describe('with telemetry on', () => {
    // A new exporter each time: stopping the SDK shuts its exporter down.
    let exporter: InMemorySpanExporter;
    let processor: SimpleSpanProcessor;
    /** The ended spans, once exported: an export waits for the resource's detectors. */
    async function spans(): Promise<ReadableSpan[]> {
      await processor.forceFlush();
      return exporter.getFinishedSpans();
    }

    function startTelemetry(env: Record<string, string> = ON): Promise<void> {
      exporter = new InMemorySpanExporter();
      processor = new SimpleSpanProcessor({ exporter });
      return telemetry.start(env, { spanProcessors: [processor], metricReaders: [] });
    }

    afterEach(() => telemetry.stop());

    it('makes a CLIENT span `chat {model}` with the GenAI attributes, under the active server span', async () => {
      await startTelemetry();
      const server = startServerSpan({ name: 'completion:start', surface: 'socket.io' });
      // The attempt starts later, in a continuation of the server span's context, as the router's would.
      const upstream = await server.run(async () => {
        await new Promise((resolve) => setImmediate(resolve));
        return startAttempt(attempt);
      });
      upstream.firstChunk();
      upstream.firstChunk();
      upstream.end({
        responseModel: 'gpt-4o-mini-2024-07-18',
        finishReasons: ['stop'],
        usage: { input: 12, output: 30, reasoning: 4 },
      });
      upstream.end({ responseModel: 'ignored' });
      server.end();

      const [client, parent] = await spans();
      expect(client.name).toBe('chat gpt-4o-mini');
      expect(client.kind).toBe(SpanKind.CLIENT);
      expect(client.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
      expect(client.spanContext().traceId).toBe(parent.spanContext().traceId);
      expect(client.attributes).toMatchObject({
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': 'openai',
        'gen_ai.request.model': 'gpt-4o-mini',
        'gen_ai.request.stream': true,
        'gen_ai.response.model': 'gpt-4o-mini-2024-07-18',
        'gen_ai.response.finish_reasons': ['stop'],
        'gen_ai.usage.input_tokens': 12,
        'gen_ai.usage.output_tokens': 30,
        'gen_ai.usage.reasoning.output_tokens': 4,
        'llm_gateway.deployment': 'primary',
      });
      expect(client.attributes['gen_ai.response.time_to_first_chunk']).toEqual(expect.any(Number));
      expect(client.status.code).toBe(SpanStatusCode.UNSET);
    });

    it('records route events and a failure as error.type with an error status', async () => {
      await startTelemetry();
      const upstream = startAttempt(attempt);
      upstream.routed({
        reason: 'fallback',
        model: 'llama',
        deployment: 'local',
        code: 'upstream_unavailable',
      });
      upstream.routed({ reason: 'hedge', model: 'llama', deployment: 'local' });
      upstream.end({ error: 'upstream_unavailable' });

      const [span] = await spans();
      expect(span.events.map((event) => [event.name, event.attributes])).toEqual([
        [
          'llm_gateway.fallback',
          {
            'llm_gateway.route.reason': 'fallback',
            'llm_gateway.route.model': 'llama',
            'llm_gateway.route.deployment': 'local',
            'llm_gateway.route.code': 'upstream_unavailable',
          },
        ],
        [
          'llm_gateway.hedge',
          {
            'llm_gateway.route.reason': 'hedge',
            'llm_gateway.route.model': 'llama',
            'llm_gateway.route.deployment': 'local',
          },
        ],
      ]);
      expect(span.attributes['error.type']).toBe('upstream_unavailable');
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
    });

    it('gives the upstream a traceparent naming the attempt, and the active one outside it', async () => {
      await startTelemetry();
      const server = startServerSpan({
        name: 'POST /api/completions/stream',
        surface: 'sse',
        traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      });
      const { upstream, active } = server.run(() => ({
        upstream: startAttempt(attempt),
        active: traceHeaders(),
      }));
      const headers = upstream.traceHeaders();
      upstream.end({});
      server.end();

      const [client, parent] = await spans();
      expect(headers['traceparent']).toMatch(TRACEPARENT);
      expect(headers['traceparent']).toBe(
        `00-4bf92f3577b34da6a3ce929d0e0e4736-${client.spanContext().spanId}-01`,
      );
      expect(active['traceparent']).toBe(
        `00-4bf92f3577b34da6a3ce929d0e0e4736-${parent.spanContext().spanId}-01`,
      );
      expect(parent.parentSpanContext?.spanId).toBe('00f067aa0ba902b7');
    });

    it("continues a kept trace context elsewhere (a handover): the attempt joins the stream's trace", async () => {
      await startTelemetry();
      const server = startServerSpan({ name: 'completion:start', surface: 'socket.io' });
      const kept = server.run(() => traceHeaders());
      server.end();
      const handedOver = runInTrace(kept, () => startAttempt(attempt));
      handedOver.routed({
        reason: 'handover',
        model: 'gpt-4o-mini',
        deployment: 'primary',
        code: 'stream_lost',
      });
      handedOver.end({});

      const [parent, client] = await spans();
      expect(client.spanContext().traceId).toBe(parent.spanContext().traceId);
      expect(client.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
      expect(client.events.map((event) => event.name)).toEqual(['llm_gateway.handover']);
      expect(runInTrace(undefined, () => 'ran')).toBe('ran');
    });

    it('starts a new trace when the incoming traceparent is not one', async () => {
      await startTelemetry();
      startServerSpan({
        name: 'completion:start',
        surface: 'socket.io',
        traceparent: '00-zz-not-a-trace',
      }).end();
      const [span] = await spans();
      expect(span.parentSpanContext).toBeUndefined();
      expect(span.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
    });

    it('never records messages or the answer unless content capture is on, then in the conventions shape', async () => {
      const messages = [{ role: 'user', content: 'a secret prompt' }];
      await startTelemetry();
      startAttempt({ ...attempt, messages }).end({ outputText: 'a secret answer', finishReasons: ['stop'] });
      expect(JSON.stringify((await spans())[0].attributes)).not.toMatch(/secret/);
      expect(capturingContent()).toBe(false);
    });

    it('records messages and the answer when the operator opts in', async () => {
      await startTelemetry({ ...ON, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: 'true' });
      expect(capturingContent()).toBe(true);
      startAttempt({ ...attempt, messages: [{ role: 'user', content: 'hi' }] }).end({
        outputText: 'hello',
        finishReasons: ['stop'],
      });
      const [span] = await spans();
      expect(JSON.parse(span.attributes['gen_ai.input.messages'] as string)).toEqual([
        { role: 'user', parts: [{ type: 'text', content: 'hi' }] },
      ]);
      expect(JSON.parse(span.attributes['gen_ai.output.messages'] as string)).toEqual([
        { role: 'assistant', parts: [{ type: 'text', content: 'hello' }], finish_reason: 'stop' },
      ]);
    });
  });
});
