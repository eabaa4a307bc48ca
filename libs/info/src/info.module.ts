import { type DynamicModule, Module, type OnApplicationBootstrap, type Provider } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { Server } from 'node:http';
import { InfoController } from './info.controller';
import { stampTimeProbeArrival } from './time-probe';

/** `GET /api/time` and `GET /api/info`; the app provides `SERVER_INFO_SOURCE`. */
@Module({})
export class InfoModule implements OnApplicationBootstrap {
  constructor(private readonly adapterHost: HttpAdapterHost) {}

  static forRoot(source: Provider): DynamicModule {
    return { module: InfoModule, controllers: [InfoController], providers: [source] };
  }

  /** The clock probe's arrival is stamped by the HTTP server's first listener, ahead of Express. */
  onApplicationBootstrap(): void {
    const server = this.adapterHost.httpAdapter?.getHttpServer() as Server | undefined;
    server?.prependListener('request', stampTimeProbeArrival);
  }
}
