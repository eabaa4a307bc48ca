import { ConfigurableModuleBuilder, type Provider } from '@nestjs/common';
import { SIMULATOR_OPTIONS } from './simulator.constants';
import type { SimulatorOptions } from './simulator-options.interface';
import { SimulatorService } from './simulator.service';

const simulatorServiceProvider: Provider = {
  provide: SimulatorService,
  inject: [SIMULATOR_OPTIONS],
  useFactory: (options: SimulatorOptions) => SimulatorService.start(options),
};

/**
 * Global by default: one simulator per application, and the modules configured from it (completion, info)
 * inject `SimulatorService` without importing the configured module themselves. The service provider is added
 * to the dynamic definition only, so a bare `imports: [SimulatorModule]` stays an empty, harmless module.
 */
export const { ConfigurableModuleClass, OPTIONS_TYPE, ASYNC_OPTIONS_TYPE } =
  new ConfigurableModuleBuilder<SimulatorOptions>({ optionsInjectionToken: SIMULATOR_OPTIONS })
    .setClassMethodName('forRoot')
    .setExtras({ isGlobal: true }, (definition, extras) => ({
      ...definition,
      global: extras.isGlobal,
      providers: [...(definition.providers ?? []), simulatorServiceProvider],
      exports: [...(definition.exports ?? []), SimulatorService],
    }))
    .build();
