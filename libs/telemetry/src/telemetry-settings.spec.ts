import { telemetrySettings } from './telemetry-settings';

describe('telemetrySettings', () => {
  it('is off without any OTEL_* switch', () => {
    expect(telemetrySettings({})).toEqual({ enabled: false, captureContent: false });
    expect(
      telemetrySettings({ OTEL_SERVICE_NAME: 'gateway', OTEL_EXPORTER_OTLP_ENDPOINT: ' ' }).enabled,
    ).toBe(false);
  });

  it.each(['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_TRACES_EXPORTER', 'OTEL_METRICS_EXPORTER'])(
    'is on when %s is set',
    (name) => {
      const value = name === 'OTEL_EXPORTER_OTLP_ENDPOINT' ? 'http://collector:4318' : 'otlp';
      expect(telemetrySettings({ [name]: value }).enabled).toBe(true);
    },
  );

  it('stays off with OTEL_SDK_DISABLED=true or both exporters none', () => {
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' };
    expect(telemetrySettings({ ...endpoint, OTEL_SDK_DISABLED: 'TRUE' }).enabled).toBe(false);
    expect(
      telemetrySettings({ ...endpoint, OTEL_TRACES_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'none' }).enabled,
    ).toBe(false);
    expect(telemetrySettings({ ...endpoint, OTEL_TRACES_EXPORTER: 'none' }).enabled).toBe(true);
  });

  it('captures content only when the conventions opt-in says exactly true', () => {
    const on = { OTEL_TRACES_EXPORTER: 'otlp' };
    expect(telemetrySettings(on).captureContent).toBe(false);
    expect(
      telemetrySettings({ ...on, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: '1' }).captureContent,
    ).toBe(false);
    expect(
      telemetrySettings({ ...on, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: 'True' }).captureContent,
    ).toBe(true);
  });
});
