export * from './gen-ai.constants';
export * from './gen-ai-metrics';
export * from './stream-trace';
export * from './telemetry';
export * from './telemetry-settings';
export * from './telemetry.module';
export * from './upstream-attempt';
