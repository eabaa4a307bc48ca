import { Module } from '@nestjs/common';
import { InMemoryStreamAdmission } from './in-memory-stream-admission';
import { ShutdownCoordinator } from './shutdown-coordinator.service';
import { StreamAdmission } from './stream-admission';
import { StreamRegistry } from './stream-registry.service';
import { StreamStarter } from './stream-starter.service';
import { STREAM_LIMITS, type StreamLimits } from './streams.constants';
import {
  STREAM_REGISTRY_OPTIONS,
  StreamsModuleBase,
  type StreamsModuleOptions,
} from './streams.module-definition';

/**
 * Global by default: every transport injects the one registry and starter. The limits are the
 * in-memory `StreamAdmission` of this process; several instances sharing limits replace that one
 * provider with a shared implementation, and nothing else changes.
 */
@Module({
  providers: [
    StreamRegistry,
    StreamStarter,
    ShutdownCoordinator,
    {
      provide: STREAM_LIMITS,
      inject: [STREAM_REGISTRY_OPTIONS],
      useFactory: (options: StreamsModuleOptions) => options.limits,
    },
    {
      provide: StreamAdmission,
      inject: [STREAM_LIMITS],
      useFactory: (limits: StreamLimits) => new InMemoryStreamAdmission(limits),
    },
  ],
  exports: [StreamRegistry, StreamStarter, ShutdownCoordinator, StreamAdmission, STREAM_LIMITS],
})
export class StreamsModule extends StreamsModuleBase {}
