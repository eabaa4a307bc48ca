import { REQUEST_LIMITS, type ServerInfo, type ServerTime } from '@app/contracts';
import { Controller, Get, Header, Inject } from '@nestjs/common';
import { SERVER_INFO_SOURCE, type ServerInfoSource } from './info.constants';

@Controller('api')
export class InfoController {
  constructor(@Inject(SERVER_INFO_SOURCE) private readonly source: ServerInfoSource) {}

  /** The server's clock, for the client's NTP-style offset estimate; never cached. */
  @Get('time')
  @Header('Cache-Control', 'no-store')
  time(): ServerTime {
    return { ts: performance.timeOrigin + performance.now() };
  }

  @Get('info')
  info(): ServerInfo {
    return {
      provider: this.source.provider,
      defaultModel: this.source.defaultModel,
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
