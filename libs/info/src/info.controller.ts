import { REQUEST_LIMITS, type ServerInfo, type ServerTime } from '@app/contracts';
import { Controller, Get, Header, Inject } from '@nestjs/common';
import { epochNow } from '@app/clock';
import { SERVER_INFO_SOURCE, type ServerInfoSource } from './info.constants';
import { serverTime } from './time-probe';

@Controller('api')
export class InfoController {
  constructor(@Inject(SERVER_INFO_SOURCE) private readonly source: ServerInfoSource) {}

  /**
   * The server's clock, for the client's NTP-style offset estimate; never cached. `timeProbe` answers this
   * path before the request reaches Nest; the route stays for the OpenAPI document and an app built without it.
   */
  @Get('time')
  @Header('Cache-Control', 'no-store')
  time(): ServerTime {
    return serverTime(epochNow());
  }

  @Get('info')
  info(): ServerInfo {
    return {
      provider: this.source.provider,
      defaultModel: this.source.defaultModel,
      ...(this.source.models ? { models: this.source.models } : {}),
      ...(this.source.simulatorProfiles ? { simulator: { profiles: this.source.simulatorProfiles } } : {}),
      limits: {
        maxBodyBytes: REQUEST_LIMITS.maxBodyBytes,
        maxMessages: REQUEST_LIMITS.maxMessages,
        maxContentLength: REQUEST_LIMITS.maxContentLength,
        maxTokensCap: REQUEST_LIMITS.maxTokensCap,
      },
    };
  }
}
