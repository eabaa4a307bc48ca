import { context, type Histogram, metrics, propagation, trace, type Tracer } from '@opentelemetry/api';
import type { NodeSDKConfiguration } from '@opentelemetry/sdk-node';
import { GATEWAY, GEN_AI_METRICS } from './gen-ai.constants';
import { telemetrySettings } from './telemetry-settings';

/** What tests swap in for the exporters the SDK would build from the environment. */
export type TelemetryOverrides = Pick<Partial<NodeSDKConfiguration>, 'spanProcessors' | 'metricReaders'>;

interface Instruments {
  operationDuration: Histogram;
  tokenUsage: Histogram;
  timeToFirstChunk: Histogram;
  timePerOutputChunk: Histogram;
}

/**
 * The process's one OpenTelemetry SDK, started only when the standard variables ask for it. Everything else in
 * this lib checks `enabled` first and does nothing when it is false: no SDK, no span objects, no context switches,
 * not even the API's no-op ones. Several apps in one process (the e2e suites, two instances on one Redis) share it:
 * it starts with the first `start` and stops with the last `stop`, which also unregisters the API's globals so
 * that a later app can start afresh.
 */
export class Telemetry {
  enabled = false;
  captureContent = false;
  private sdk: { shutdown(): Promise<void> } | undefined;
  private holders = 0;
  private starting: Promise<void> | undefined;
  private currentTracer: Tracer | undefined;
  private currentInstruments: Instruments | undefined;

  /**
   * Starts the SDK if the variables ask for it; resolves once spans and metrics are recorded. The SDK (and the
   * exporters it brings: gRPC, protobuf) is only loaded then: an instance with telemetry off never loads it.
   */
  async start(env: NodeJS.ProcessEnv = process.env, overrides: TelemetryOverrides = {}): Promise<void> {
    this.holders += 1;
    if (this.holders === 1) {
      this.starting = this.startSdk(env, overrides);
    }
    await this.starting;
  }

  /** Flushes what is pending to the exporters and stops, once the last holder has stopped. */
  async stop(): Promise<void> {
    this.holders = Math.max(0, this.holders - 1);
    await this.starting;
    if (this.holders > 0 || !this.sdk) {
      return;
    }
    const sdk = this.sdk;
    this.sdk = undefined;
    this.enabled = false;
    this.captureContent = false;
    this.currentTracer = undefined;
    this.currentInstruments = undefined;
    try {
      await sdk.shutdown();
    } finally {
      trace.disable();
      metrics.disable();
      propagation.disable();
      context.disable();
    }
  }

  private async startSdk(env: NodeJS.ProcessEnv, overrides: TelemetryOverrides): Promise<void> {
    const settings = telemetrySettings(env);
    if (!settings.enabled) {
      return;
    }
    const { NodeSDK } = await import('@opentelemetry/sdk-node');
    const sdk = new NodeSDK({
      // OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) wins; this is only the default.
      ...(namesService(env) ? {} : { serviceName: GATEWAY.scope }),
      // No auto-instrumentation: the gateway makes its own server and client spans, in the GenAI conventions.
      instrumentations: [],
      ...overrides,
    });
    sdk.start();
    this.sdk = sdk;
    this.enabled = true;
    this.captureContent = settings.captureContent;
  }

  /** The gateway's tracer; only asked for when `enabled`. */
  get tracer(): Tracer {
    return (this.currentTracer ??= trace.getTracer(GATEWAY.scope));
  }

  /** The GenAI client histograms, made once, with the conventions' bucket boundaries as advice. */
  get instruments(): Instruments {
    if (!this.currentInstruments) {
      const meter = metrics.getMeter(GATEWAY.scope);
      const histogram = (spec: (typeof GEN_AI_METRICS)[keyof typeof GEN_AI_METRICS]) =>
        meter.createHistogram(spec.name, {
          unit: spec.unit,
          description: spec.description,
          advice: { explicitBucketBoundaries: [...spec.buckets] },
        });
      this.currentInstruments = {
        operationDuration: histogram(GEN_AI_METRICS.operationDuration),
        tokenUsage: histogram(GEN_AI_METRICS.tokenUsage),
        timeToFirstChunk: histogram(GEN_AI_METRICS.timeToFirstChunk),
        timePerOutputChunk: histogram(GEN_AI_METRICS.timePerOutputChunk),
      };
    }
    return this.currentInstruments;
  }
}

function namesService(env: NodeJS.ProcessEnv): boolean {
  return (
    (env['OTEL_SERVICE_NAME'] ?? '').trim() !== '' ||
    /(^|,)\s*service\.name\s*=/.test(env['OTEL_RESOURCE_ATTRIBUTES'] ?? '')
  );
}

/** The one instance: importable without Nest, so the upstream router can use it on its hot path. */
export const telemetry = new Telemetry();
