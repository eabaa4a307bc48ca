import { Module } from '@nestjs/common';
import { ThrottlerStorage, ThrottlerStorageService } from '@nestjs/throttler';
import { ShutdownCoordinator } from './shutdown-coordinator.service';
import { StreamRegistry } from './stream-registry.service';
import { StreamStarter } from './stream-starter.service';
import { STREAM_LIMITS } from './streams.constants';
import {
  STREAM_REGISTRY_OPTIONS,
  StreamsModuleBase,
  type StreamsModuleOptions,
} from './streams.module-definition';

/**
 * Global by default: every transport injects the one registry and starter. The rate-limit store is
 * `@nestjs/throttler`'s in-memory one; a shared store for several instances replaces the
 * `ThrottlerStorage` provider (any of the throttler's Redis storages fits).
 */
@Module({
  providers: [
    StreamRegistry,
    StreamStarter,
    ShutdownCoordinator,
    { provide: ThrottlerStorage, useClass: ThrottlerStorageService },
    {
      provide: STREAM_LIMITS,
      inject: [STREAM_REGISTRY_OPTIONS],
      useFactory: (options: StreamsModuleOptions) => options.limits,
    },
  ],
  exports: [StreamRegistry, StreamStarter, ShutdownCoordinator],
})
export class StreamsModule extends StreamsModuleBase {}
