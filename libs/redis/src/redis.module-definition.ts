import { ConfigurableModuleBuilder } from '@nestjs/common';

export interface RedisModuleOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` for TLS. */
  url: string;
}

export const { ConfigurableModuleClass: RedisModuleBase, MODULE_OPTIONS_TOKEN: REDIS_OPTIONS } =
  new ConfigurableModuleBuilder<RedisModuleOptions>().setClassMethodName('forRoot').build();
