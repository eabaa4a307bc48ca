import type { CompletionEvent } from '@app/contracts';
import { type HistogramMetricData, MetricReader } from '@opentelemetry/sdk-metrics';
import { recordStreamOperation } from './gen-ai-metrics';
import { telemetry } from './telemetry';

/** Collects on demand, as the periodic OTLP reader would on its interval. */
class CollectingReader extends MetricReader {
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

const base = { streamId: 's', ts: 0 };
/** An event without the fields `stream` numbers, kept per member of the union. */
type Unnumbered<E = CompletionEvent> = E extends CompletionEvent ? Omit<E, 'streamId' | 'seq'> : never;
const stream = (...events: Unnumbered[]): CompletionEvent[] =>
  events.map((event, seq) => ({ ...base, ...event, seq }) as CompletionEvent);

describe('recordStreamOperation', () => {
  it('records nothing when telemetry is off', () => {
    expect(telemetry.enabled).toBe(false);
    expect(() => recordStreamOperation(stream({ type: 'start', model: 'm', ts: 0 }), 'openai')).not.toThrow();
  });

  describe('with telemetry on', () => {
    let reader: CollectingReader;
    beforeEach(() => {
      reader = new CollectingReader();
      return telemetry.start(
        { OTEL_METRICS_EXPORTER: 'otlp', OTEL_TRACES_EXPORTER: 'none' },
        { metricReaders: [reader] },
      );
    });
    afterEach(() => telemetry.stop());

    async function histograms(): Promise<Map<string, HistogramMetricData>> {
      const { resourceMetrics } = await reader.collect();
      const all = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics) as HistogramMetricData[];
      return new Map(all.map((metric) => [metric.descriptor.name, metric]));
    }

    it('records the four GenAI histograms of a finished stream, in seconds, with the serving model', async () => {
      recordStreamOperation(
        stream(
          { type: 'start', model: 'chat', ts: 1000 },
          { type: 'reasoning', text: 'x', ts: 1100 },
          { type: 'token', text: 'a', ts: 1150 },
          { type: 'route', model: 'llama', deployment: 'local', reason: 'continuation', ts: 1160 },
          { type: 'token', text: 'b', ts: 1250 },
          {
            type: 'done',
            finishReason: 'stop',
            usage: { promptTokens: 7, completionTokens: 3, totalTokens: 10 },
            timing: { ttftMs: 100, durationMs: 300 },
            ts: 1300,
          },
        ),
        'openai',
      );
      const metrics = await histograms();
      const point = (name: string) => metrics.get(name)?.dataPoints ?? [];

      const [duration] = point('gen_ai.client.operation.duration');
      expect(metrics.get('gen_ai.client.operation.duration')?.descriptor.unit).toBe('s');
      expect(duration.attributes).toEqual({
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': 'openai',
        'gen_ai.request.model': 'chat',
        'gen_ai.response.model': 'llama',
      });
      expect(duration.value).toMatchObject({ count: 1, sum: 0.3 });
      expect(point('gen_ai.client.operation.time_to_first_chunk')[0].value).toMatchObject({
        count: 1,
        sum: 0.1,
      });
      const gaps = point('gen_ai.client.operation.time_per_output_chunk')[0].value;
      expect(gaps.count).toBe(2);
      expect(gaps.sum).toBeCloseTo(0.15, 10);
      const usage = point('gen_ai.client.token.usage').map((data) => [
        data.attributes['gen_ai.token.type'],
        data.value.sum,
      ]);
      expect(usage).toEqual([
        ['input', 7],
        ['output', 3],
      ]);
    });

    it('marks a stream that ended with an error with error.type, and records no usage', async () => {
      recordStreamOperation(
        stream(
          { type: 'start', model: 'chat', ts: 1000 },
          {
            type: 'error',
            error: { code: 'upstream_timeout', message: 'timed out', retryable: true },
            ts: 1500,
          },
        ),
        'openai',
      );
      const metrics = await histograms();
      const [duration] = metrics.get('gen_ai.client.operation.duration')?.dataPoints ?? [];
      expect(duration.attributes['error.type']).toBe('upstream_timeout');
      expect(duration.value.sum).toBe(0.5);
      expect(metrics.get('gen_ai.client.token.usage')?.dataPoints ?? []).toEqual([]);
    });
  });
});
