import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { StreamLimits, StreamRegistryOptions } from './streams.constants';

export interface StreamsModuleOptions extends StreamRegistryOptions {
  limits: StreamLimits;
}

export const { ConfigurableModuleClass: StreamsModuleBase, MODULE_OPTIONS_TOKEN: STREAM_REGISTRY_OPTIONS } =
  new ConfigurableModuleBuilder<StreamsModuleOptions>()
    .setClassMethodName('forRoot')
    .setExtras({ isGlobal: true }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
    .build();
