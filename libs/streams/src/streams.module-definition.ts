import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { StreamLimits, StreamRegistryOptions } from './streams.constants';

export interface StreamsModuleOptions extends StreamRegistryOptions {
  limits: StreamLimits;
  /** `redis`: streams shared by every instance on the global `RedisConnection` (`REDIS_URL`); default `memory`. */
  store?: 'memory' | 'redis';
}

export const { ConfigurableModuleClass: StreamsModuleBase, MODULE_OPTIONS_TOKEN: STREAM_REGISTRY_OPTIONS } =
  new ConfigurableModuleBuilder<StreamsModuleOptions>()
    .setClassMethodName('forRoot')
    .setExtras({ isGlobal: true }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
    .build();
