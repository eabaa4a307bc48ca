import { Global, Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { RedisConnection } from './redis-connection';
import { RedisHealthIndicator } from './redis-health.indicator';
import { REDIS_OPTIONS, RedisModuleBase, type RedisModuleOptions } from './redis.module-definition';

/** Global: the stream registry and the health check share the one `RedisConnection`. Imported only with `REDIS_URL`. */
@Global()
@Module({
  imports: [TerminusModule],
  providers: [
    {
      provide: RedisConnection,
      inject: [REDIS_OPTIONS],
      // Async, so that the client library is loaded before anything that injects the connection starts.
      useFactory: (options: RedisModuleOptions) => RedisConnection.open(options),
    },
    RedisHealthIndicator,
  ],
  exports: [RedisConnection, RedisHealthIndicator],
})
export class RedisModule extends RedisModuleBase {}
