import { Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Telemetry } from './telemetry';

/** Starts the SDK with the app (when the OTEL_* variables ask for it) and flushes and stops it with the app. */
@Injectable()
export class TelemetryLifecycle implements OnModuleInit, OnApplicationShutdown {
  constructor(private readonly telemetry: Telemetry) {}

  onModuleInit(): Promise<void> {
    return this.telemetry.start(process.env);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.telemetry.stop();
  }
}
