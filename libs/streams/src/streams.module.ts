import { CompletionService } from '@app/completion';
import { MetricsService } from '@app/metrics';
import { RedisConnection } from '@app/redis';
import { Module } from '@nestjs/common';
import { ThrottlerStorage, ThrottlerStorageService } from '@nestjs/throttler';
import { InMemoryStreamRegistry } from './in-memory-stream-registry';
import { RedisStreamRegistry } from './redis-stream-registry';
import { ShutdownCoordinator } from './shutdown-coordinator.service';
import { StreamRegistry } from './stream-registry';
import { StreamStarter } from './stream-starter.service';
import { STREAM_LIMITS } from './streams.constants';
import {
  STREAM_REGISTRY_OPTIONS,
  StreamsModuleBase,
  type StreamsModuleOptions,
} from './streams.module-definition';

/**
 * Global by default: every transport injects the one registry and starter. The registry is in memory, or on
 * the global `RedisConnection` with `store: 'redis'` (the app imports `RedisModule` only then). The
 * rate-limit store is `@nestjs/throttler`'s in-memory one.
 */
@Module({
  providers: [
    {
      provide: StreamRegistry,
      inject: [
        CompletionService,
        STREAM_REGISTRY_OPTIONS,
        { token: MetricsService, optional: true },
        { token: RedisConnection, optional: true },
      ],
      useFactory: (
        completion: CompletionService,
        options: StreamsModuleOptions,
        metrics: MetricsService | undefined,
        redis: RedisConnection | undefined,
      ): StreamRegistry => {
        if (options.store !== 'redis') {
          return new InMemoryStreamRegistry(completion, options, metrics);
        }
        if (!redis) {
          throw new Error("StreamsModule: store 'redis' needs RedisModule imported");
        }
        return new RedisStreamRegistry(completion, options, redis, metrics);
      },
    },
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
