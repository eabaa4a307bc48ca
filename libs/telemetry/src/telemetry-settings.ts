import { CAPTURE_MESSAGE_CONTENT_ENV } from './gen-ai.constants';

/** The standard variables that turn the SDK on: without one of them, nothing of OpenTelemetry starts. */
export const TELEMETRY_SWITCHES = [
  'OTEL_EXPORTER_OTLP_ENDPOINT',
  'OTEL_TRACES_EXPORTER',
  'OTEL_METRICS_EXPORTER',
] as const;

export interface TelemetrySettings {
  enabled: boolean;
  /** Prompts and answers on the attempt spans, in the conventions' shape; never without the operator's opt-in. */
  captureContent: boolean;
}

/**
 * Off by default: on when an exporter endpoint or an exporter is named, unless `OTEL_SDK_DISABLED=true` (the
 * standard kill switch) or both exporters are `none`. Everything else (service name, resource attributes, sampler,
 * protocol, per-signal endpoints) is the SDK's, read by it from the same standard `OTEL_*` variables.
 */
export function telemetrySettings(env: NodeJS.ProcessEnv): TelemetrySettings {
  const named = TELEMETRY_SWITCHES.some((name) => (env[name] ?? '').trim() !== '');
  const disabled = env['OTEL_SDK_DISABLED']?.trim().toLowerCase() === 'true';
  const neither = exportsNone(env['OTEL_TRACES_EXPORTER']) && exportsNone(env['OTEL_METRICS_EXPORTER']);
  return {
    enabled: named && !disabled && !neither,
    captureContent: env[CAPTURE_MESSAGE_CONTENT_ENV]?.trim().toLowerCase() === 'true',
  };
}

function exportsNone(value: string | undefined): boolean {
  return value !== undefined && value.split(',').some((name) => name.trim().toLowerCase() === 'none');
}
