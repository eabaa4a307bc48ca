import { Global, Module } from '@nestjs/common';
import { telemetry, Telemetry } from './telemetry';
import { TelemetryLifecycle } from './telemetry.lifecycle';

/**
 * OpenTelemetry for the app: imported once, by the app module. The lib's functions (`startServerSpan`,
 * `startAttempt`, `traceHeaders`, `recordStreamOperation`) use the one process-wide `telemetry` without DI; this
 * module only ties its start and stop to the app's life.
 */
@Global()
@Module({
  providers: [{ provide: Telemetry, useValue: telemetry }, TelemetryLifecycle],
  exports: [Telemetry],
})
export class TelemetryModule {}
