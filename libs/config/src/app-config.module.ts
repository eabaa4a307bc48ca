import { Global, Module, type DynamicModule } from '@nestjs/common';
import type { AppConfig } from './app-config.schema';
import { APP_CONFIG } from './config.constants';

/**
 * Provides the validated configuration everywhere. The environment (and `.env`) is read and
 * validated once in `main.ts`, before Nest starts, so that a bad value stops the process with one
 * line instead of a stack trace from the middle of bootstrapping.
 */
@Global()
@Module({})
export class AppConfigModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: AppConfigModule,
      providers: [{ provide: APP_CONFIG, useValue: config }],
      exports: [APP_CONFIG],
    };
  }
}
