import { completionRequestSchema } from '@app/completion';
import {
  AllowResumeToken,
  AuthGuard,
  CurrentPrincipal,
  type Principal,
  readJsonBody,
  ResumeTokenService,
} from '@app/auth';
import { RESUME_TOKEN_HEADER, STREAM_ID_HEADER } from '@app/contracts';
import { MetricsService } from '@app/metrics';
import { ProblemException } from '@app/problem';
import { StreamRegistry, type StreamListener, StreamStarter, StreamsUnavailableError } from '@app/streams';
import {
  Controller,
  Delete,
  Headers,
  HttpCode,
  type MessageEvent,
  Param,
  Query,
  Req,
  RequestMethod,
  Res,
  Sse,
  UseGuards,
} from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiBody,
  ApiHeader,
  ApiNoContentResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiProduces,
  ApiQuery,
  ApiSecurity,
  ApiTags,
} from '@nestjs/swagger';
import type { Request, Response } from 'express';
import type { Observable } from 'rxjs';
import { z } from 'zod';
import { MAX_PENDING_BYTES, SseConnection } from './sse-connection';

const EVENT_STREAM_DESCRIPTION =
  'text/event-stream: `id: <seq>`, `event: start|token|done|error`, `data: <CompletionEvent JSON>`; `: ping` every 15 s while idle. See docs/protocol.md.';
const REFUSALS =
  'Refusals are application/problem+json with `code`: 400, 401, 403, 404, 413, 415, 429 (Retry-After), 503 (Retry-After).';

/**
 * Nest's own queue for a client that does not read: a backstop above our cap (SseConnection), which also
 * counts what the response holds and reports the drop.
 */
const NEST_MAX_PENDING = 4 * MAX_PENDING_BYTES;

/**
 * The SSE transport on Nest's `@Sse()`: each route refuses (problem+json) or returns the stream's events as an
 * Observable, which Nest writes. Everything that can refuse is awaited before the Observable is returned, and
 * these routes have no interceptor: Nest sends the 200 headers a turn after it has the Observable, and an
 * interceptor would run the handler only after that.
 */
@ApiTags('completions')
@ApiBearerAuth()
@ApiSecurity('api-key')
@Controller('api/completions')
@UseGuards(AuthGuard)
export class SseController {
  private readonly connections = new Set<SseConnection>();

  constructor(
    private readonly starter: StreamStarter,
    private readonly registry: StreamRegistry,
    private readonly resumeTokens: ResumeTokenService,
    private readonly metrics: MetricsService,
  ) {
    metrics.measurePendingBytes('sse', () => {
      let total = 0;
      for (const connection of this.connections) {
        total += connection.pendingBytes;
      }
      return total;
    });
  }

  @Sse('stream', { method: RequestMethod.POST, maxPendingDataLength: NEST_MAX_PENDING })
  @HttpCode(200)
  @ApiOperation({ summary: 'Start a stream', description: REFUSALS })
  @ApiBody({ schema: z.toJSONSchema(completionRequestSchema) as object })
  @ApiProduces('text/event-stream')
  @ApiOkResponse({ description: `${EVENT_STREAM_DESCRIPTION} Headers: X-Stream-Id, X-Resume-Token.` })
  async startStream(
    @Req() request: Request,
    @Res({ passthrough: true }) response: Response,
    @CurrentPrincipal() principal: Principal,
  ): Promise<Observable<MessageEvent>> {
    // Read only now, after the guards, as JsonBodyInterceptor does for other routes (see readJsonBody).
    await readJsonBody(request, response);
    if (!request.is('application/json')) {
      throw new ProblemException('unsupported_media_type', 'Send the CompletionRequest as application/json.');
    }
    const outcome = await this.starter.start(
      request.body as unknown,
      principal.id,
      'sse',
      principal.limitKey,
    );
    if (!outcome.ok) {
      throw new ProblemException(outcome.code, outcome.message, {
        errors: outcome.violations,
        retryAfterMs: outcome.retryAfterMs,
      });
    }
    // Listening in the same tick as start: the registry buffers the start event until then.
    const listener = await unavailableAsProblem(
      this.registry.listen(outcome.streamId, principal.id, -1, 'start', principal.limitKey),
    );
    if (!listener.ok) {
      // A stream's own first listener is never refused; one that ended and expired that fast is gone.
      throw new ProblemException('not_found', 'No such stream, or it is no longer available.');
    }
    response.setHeader(RESUME_TOKEN_HEADER, this.resumeTokens.issue(outcome.streamId, principal));
    return this.follow(outcome.streamId, listener, response);
  }

  /**
   * Resume: the events after Last-Event-ID (header, or `?lastEventId=`), then live ones. A browser's
   * EventSource, which cannot send headers, authenticates with `?resumeToken=` from the start response.
   */
  @Sse(':streamId/stream', { maxPendingDataLength: NEST_MAX_PENDING })
  @AllowResumeToken()
  @ApiOperation({ summary: 'Resume a stream after Last-Event-ID (header or query), then follow it live' })
  @ApiHeader({
    name: 'Last-Event-ID',
    required: false,
    description: 'the last seq received; absent: from the start',
  })
  @ApiQuery({ name: 'lastEventId', required: false })
  @ApiQuery({ name: 'resumeToken', required: false, description: 'from X-Resume-Token, for EventSource' })
  @ApiProduces('text/event-stream')
  @ApiOkResponse({ description: EVENT_STREAM_DESCRIPTION })
  @ApiNotFoundResponse({ description: 'unknown, expired, or another principal’s stream' })
  async resumeStream(
    @Param('streamId') streamId: string,
    @Headers('last-event-id') lastEventIdHeader: string | undefined,
    @Query('lastEventId') lastEventIdQuery: string | undefined,
    @Res({ passthrough: true }) response: Response,
    @CurrentPrincipal() principal: Principal,
  ): Promise<Observable<MessageEvent>> {
    const lastSeq = parseLastEventId(lastEventIdHeader ?? lastEventIdQuery);
    if (lastSeq === undefined) {
      throw new ProblemException(
        'invalid_request',
        'Last-Event-ID must be a whole number (the last seq received).',
      );
    }
    const outcome = await this.starter.resume(streamId, principal.id, lastSeq, principal.limitKey);
    if (!outcome.ok) {
      throw new ProblemException(outcome.code, outcome.message, { retryAfterMs: outcome.retryAfterMs });
    }
    this.metrics.resumed('sse');
    return this.follow(streamId, outcome, response);
  }

  @Delete(':streamId')
  @HttpCode(204)
  @ApiOperation({
    summary: 'Cancel a stream: the upstream request is aborted and the stream ends with done/cancelled',
  })
  @ApiNoContentResponse({
    description: 'cancelled; also for a finished stream still kept for resume (nothing left to cancel)',
  })
  @ApiNotFoundResponse({ description: 'unknown, expired, or another principal’s stream' })
  async cancelStream(
    @Param('streamId') streamId: string,
    @CurrentPrincipal() principal: Principal,
  ): Promise<void> {
    if (!(await unavailableAsProblem(this.registry.cancel(streamId, principal.id)))) {
      throw new ProblemException('not_found', 'No such stream.');
    }
  }

  /** The listener's events for Nest to write; Nest sends the headers set here with its own. */
  private follow(streamId: string, listener: StreamListener, response: Response): Observable<MessageEvent> {
    response.setHeader(STREAM_ID_HEADER, streamId);
    const connection = new SseConnection(response, () => this.metrics.slowClientDropped('sse'));
    this.connections.add(connection);
    this.metrics.connectionOpened('sse');
    const closed = () => {
      this.metrics.connectionClosed('sse');
      this.connections.delete(connection);
      // Only now: a replay has left the process once the response is closed, not when its events were queued.
      listener.leave();
    };
    // The client may have gone while the stream was being started; Nest then never subscribes.
    if (response.closed) {
      closed();
    } else {
      response.once('close', closed);
    }
    return connection.messages(listener.events);
  }
}

/** A shared registry that cannot reach its store answers a retryable 503, not a 404 that says the stream is gone. */
async function unavailableAsProblem<T>(answer: T | Promise<T>): Promise<T> {
  try {
    return await answer;
  } catch (error) {
    if (error instanceof StreamsUnavailableError) {
      throw new ProblemException('unavailable', 'Streams cannot be reached right now; retry shortly.', {
        retryAfterMs: 1000,
      });
    }
    throw error;
  }
}

/** No Last-Event-ID means "from the start" (-1). */
function parseLastEventId(value: string | undefined): number | undefined {
  if (value === undefined || value === '') {
    return -1;
  }
  return /^(0|[1-9]\d{0,9})$/.test(value) ? Number(value) : undefined;
}
