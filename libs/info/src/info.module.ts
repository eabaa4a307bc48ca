import { type DynamicModule, Module, type Provider } from '@nestjs/common';
import { InfoController } from './info.controller';

/** `GET /api/time` and `GET /api/info`; the app provides `SERVER_INFO_SOURCE`. */
@Module({})
export class InfoModule {
  static forRoot(source: Provider): DynamicModule {
    return { module: InfoModule, controllers: [InfoController], providers: [source] };
  }
}
