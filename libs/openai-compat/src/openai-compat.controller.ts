import { AuthGuard, CurrentPrincipal, JsonBodyInterceptor, type Principal } from '@app/auth';
import { startServerSpan } from '@app/telemetry';
import { Body, Controller, Get, HttpCode, Post, Req, Res, UseGuards, UseInterceptors } from '@nestjs/common';
import { ApiBearerAuth, ApiExcludeController } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { OpenAiRelay } from './openai-relay.service';

/**
 * The OpenAI-compatible surface: any OpenAI SDK with `baseURL: <gateway>/v1` and the gateway's credentials as its
 * API key. Same guard as the other transports; errors in OpenAI's shape (`OpenAiErrorFilter`). Its reference is
 * OpenAI's own API, so it stays out of the gateway's OpenAPI document (docs/protocol.md describes it).
 */
@ApiExcludeController()
@ApiBearerAuth()
@Controller('v1')
@UseGuards(AuthGuard)
export class OpenAiCompatController {
  constructor(private readonly relay: OpenAiRelay) {}

  @Post('chat/completions')
  @HttpCode(200)
  @UseInterceptors(JsonBodyInterceptor)
  chatCompletions(
    @Req() request: Request,
    @Res() response: Response,
    @Body() body: unknown,
    @CurrentPrincipal() principal: Principal,
  ): Promise<void> {
    const traced = startServerSpan({
      name: 'POST /v1/chat/completions',
      surface: 'openai',
      traceparent: request.headers.traceparent,
      tracestate: request.headers.tracestate,
      http: { method: 'POST', route: '/v1/chat/completions' },
    });
    // Refusals included: the error filter answers on the same response, so its close ends the span.
    response.once('close', () => traced.end(response.statusCode));
    // The relay's upstream request is made inside the span's context: its attempt spans are children of this one.
    return traced.run(() => this.relay.chatCompletions(request, response, body, principal));
  }

  @Get('models')
  models(@Res() response: Response, @CurrentPrincipal() principal: Principal): Promise<void> {
    return this.relay.models(response, principal);
  }
}
