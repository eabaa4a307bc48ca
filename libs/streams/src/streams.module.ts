import { CompletionService } from '@app/completion';
import { MetricsService } from '@app/metrics';
import { RedisConnection } from '@app/redis';
import { Module } from '@nestjs/common';
import { InMemoryStreamAdmission } from './in-memory-stream-admission';
import { InMemoryStreamRegistry } from './in-memory-stream-registry';
import { RedisStreamAdmission } from './redis-stream-admission';
import { RedisStreamRegistry } from './redis-stream-registry';
import { ShutdownCoordinator } from './shutdown-coordinator.service';
import { StreamAdmission } from './stream-admission';
import { StreamRegistry } from './stream-registry';
import { StreamStarter } from './stream-starter.service';
import { STREAM_LIMITS, type StreamLimits } from './streams.constants';
import {
  STREAM_REGISTRY_OPTIONS,
  StreamsModuleBase,
  type StreamsModuleOptions,
} from './streams.module-definition';

function redisOf(options: StreamsModuleOptions, redis: RedisConnection | undefined): RedisConnection {
  if (!redis) {
    throw new Error("StreamsModule: store 'redis' needs RedisModule imported");
  }
  return redis;
}

/**
 * Global by default: every transport injects the one registry, starter and admission. Both the registry and
 * the limits are in this process's memory, or, with `store: 'redis'`, on the global `RedisConnection` (the app
 * imports `RedisModule` only then), shared by every instance; nothing else changes.
 */
@Module({
  providers: [
    {
      provide: StreamRegistry,
      inject: [
        CompletionService,
        STREAM_REGISTRY_OPTIONS,
        STREAM_LIMITS,
        StreamAdmission,
        { token: MetricsService, optional: true },
        { token: RedisConnection, optional: true },
      ],
      useFactory: (
        completion: CompletionService,
        options: StreamsModuleOptions,
        limits: StreamLimits,
        admission: StreamAdmission,
        metrics: MetricsService | undefined,
        redis: RedisConnection | undefined,
      ): StreamRegistry =>
        options.store === 'redis'
          ? new RedisStreamRegistry(completion, options, limits, redisOf(options, redis), admission, metrics)
          : new InMemoryStreamRegistry(completion, options, limits, metrics),
    },
    StreamStarter,
    ShutdownCoordinator,
    {
      provide: STREAM_LIMITS,
      inject: [STREAM_REGISTRY_OPTIONS],
      useFactory: (options: StreamsModuleOptions) => options.limits,
    },
    {
      provide: StreamAdmission,
      inject: [STREAM_REGISTRY_OPTIONS, STREAM_LIMITS, { token: RedisConnection, optional: true }],
      useFactory: (
        options: StreamsModuleOptions,
        limits: StreamLimits,
        redis: RedisConnection | undefined,
      ): StreamAdmission =>
        options.store === 'redis'
          ? new RedisStreamAdmission(redisOf(options, redis), limits)
          : new InMemoryStreamAdmission(limits),
    },
  ],
  exports: [StreamRegistry, StreamStarter, ShutdownCoordinator, StreamAdmission, STREAM_LIMITS],
})
export class StreamsModule extends StreamsModuleBase {}
