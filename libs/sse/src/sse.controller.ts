import { AllowResumeToken, AuthGuard, CurrentPrincipal, type Principal, ResumeTokenService } from '@app/auth';
import type { CompletionEvent } from '@app/contracts';
import { ProblemException } from '@app/problem';
import { StreamRegistry, StreamStarter } from '@app/streams';
import {
  Body,
  Controller,
  Delete,
  Get,
  Headers,
  HttpCode,
  Param,
  Post,
  Query,
  Req,
  Res,
  UseGuards,
} from '@nestjs/common';
import type { Request, Response } from 'express';
import type { Observable } from 'rxjs';
import { RESUME_TOKEN_HEADER, SseWriter } from './sse-writer';

/**
 * The SSE transport. It writes the stream itself instead of using Nest's `@Sse()`: the contract fixes
 * headers `@Sse()` sets differently (its Cache-Control), needs `X-Stream-Id` before the first event,
 * `event:` lines with `id:` taken from the event's seq, an idle ping, and a cap on what a slow reader
 * may leave buffered; and each event is serialised once, straight to the socket.
 */
@Controller('api/completions')
@UseGuards(AuthGuard)
export class SseController {
  constructor(
    private readonly starter: StreamStarter,
    private readonly registry: StreamRegistry,
    private readonly resumeTokens: ResumeTokenService,
  ) {}

  @Post('stream')
  @HttpCode(200)
  async startStream(
    @Req() request: Request,
    @Res() response: Response,
    @Body() body: unknown,
    @CurrentPrincipal() principal: Principal,
  ): Promise<void> {
    if (!request.is('application/json')) {
      throw new ProblemException('unsupported_media_type', 'Send the CompletionRequest as application/json.');
    }
    const outcome = await this.starter.start(body, principal.id);
    if (!outcome.ok) {
      throw new ProblemException(outcome.code, outcome.message, {
        errors: outcome.violations,
        retryAfterMs: outcome.retryAfterMs,
      });
    }
    // Listening in the same tick as start: the registry buffers the start event until then.
    const events = this.registry.listen(outcome.streamId, principal.id);
    if (events) {
      response.setHeader(RESUME_TOKEN_HEADER, this.resumeTokens.issue(outcome.streamId, principal));
      this.pipe(outcome.streamId, events, response);
    }
  }

  /**
   * Resume: the events after Last-Event-ID (header, or `?lastEventId=`), then live ones. A browser's
   * EventSource, which cannot send headers, authenticates with `?resumeToken=` from the start response.
   */
  @Get(':streamId/stream')
  @AllowResumeToken()
  resumeStream(
    @Param('streamId') streamId: string,
    @Headers('last-event-id') lastEventIdHeader: string | undefined,
    @Query('lastEventId') lastEventIdQuery: string | undefined,
    @Res() response: Response,
    @CurrentPrincipal() principal: Principal,
  ): void {
    const lastSeq = parseLastEventId(lastEventIdHeader ?? lastEventIdQuery);
    if (lastSeq === undefined) {
      throw new ProblemException(
        'invalid_request',
        'Last-Event-ID must be a whole number (the last seq received).',
      );
    }
    const events = this.registry.listen(streamId, principal.id, lastSeq);
    if (!events) {
      throw new ProblemException('not_found', 'No such stream, or it is no longer available.');
    }
    this.pipe(streamId, events, response);
  }

  @Delete(':streamId')
  @HttpCode(204)
  cancelStream(@Param('streamId') streamId: string, @CurrentPrincipal() principal: Principal): void {
    if (!this.registry.cancel(streamId, principal.id)) {
      throw new ProblemException('not_found', 'No such stream.');
    }
  }

  private pipe(streamId: string, events: Observable<CompletionEvent>, response: Response): void {
    const writer = new SseWriter(response, streamId);
    const subscription = events.subscribe({
      next: (event) => writer.send(event),
      complete: () => writer.end(),
    });
    // The client went away (or was dropped as too slow): stop listening; the registry keeps the stream for a resume.
    response.on('close', () => {
      subscription.unsubscribe();
      writer.end();
    });
  }
}

/** No Last-Event-ID means "from the start" (-1). */
function parseLastEventId(value: string | undefined): number | undefined {
  if (value === undefined || value === '') {
    return -1;
  }
  return /^(0|[1-9]\d{0,9})$/.test(value) ? Number(value) : undefined;
}
