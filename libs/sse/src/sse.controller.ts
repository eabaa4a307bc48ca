import { CompletionService, completionRequestSchema } from '@app/completion';
import {
  AllowResumeToken,
  AuthGuard,
  CurrentPrincipal,
  JsonBody,
  ModelPolicy,
  type Principal,
  ResumeTokenService,
} from '@app/auth';
import { RESUME_TOKEN_HEADER } from '@app/contracts';
import { MetricsService } from '@app/metrics';
import { ProblemException } from '@app/problem';
import { StreamRegistry, type StreamListener, StreamStarter, StreamsUnavailableError } from '@app/streams';
import { startServerSpan, type StreamTrace } from '@app/telemetry';
import {
  Controller,
  Delete,
  Get,
  Headers,
  HttpCode,
  type OnModuleDestroy,
  Param,
  Post,
  Query,
  Req,
  Res,
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
import { z } from 'zod';
import { SseWriters } from './sse-writer';

/**
 * The SSE transport. It writes the stream itself (SseWriter) instead of returning an Observable to Nest's
 * `@Sse()`, for what that costs, measured in one bench run against an `@Sse()` version of these routes
 * (bench/results/sse-vs-writer, issue 12): `@Sse()` took 1.17-1.25x this writer's CPU per token at
 * 1,000 x 50/s, 1.18-1.25x its CPU per stream start and 1.16x its memory per open stream, on goals the
 * gateway misses already. Per the profile, Nest writes an event only once the previous write has called
 * back (a tick and a promise later), so events arriving together each take a `writev` where these share
 * one, and flushes the headers on their own; it adds a Transform stream, an AbortController aborted with
 * a DOMException, and two timers per stream. Worth measuring again when Nest writes a turn's events in one write.
 */
const EVENT_STREAM_DESCRIPTION =
  'text/event-stream: `id: <seq>`, `event: start|token|done|error`, `data: <CompletionEvent JSON>`; `: ping` every 15 s while idle. See docs/protocol.md.';
/** The routes that answer `text/event-stream`: what `isSseStreamRequest` recognises, written once. */
const SSE_ROUTES = { base: 'api/completions', start: 'stream', resume: ':streamId/stream' } as const;
const START_PATH = `/${SSE_ROUTES.base}/${SSE_ROUTES.start}`;
const RESUME_PATH = new RegExp(`^/${SSE_ROUTES.base}/[^/]+/stream$`);

/**
 * Whether a request is for one of this transport's streams (a start or a resume), by method and path, before any
 * routing: `createApp` gives these responses the security headers of a non-document answer (docs/auth.md). A
 * spelling Express routes here too (another letter case, a trailing slash) is not recognised and gets the page
 * set: more headers, never fewer.
 */
export function isSseStreamRequest(method: string | undefined, path: string): boolean {
  return method === 'POST' ? path === START_PATH : method === 'GET' && RESUME_PATH.test(path);
}

const REFUSALS =
  'Refusals are application/problem+json with `code`: 400, 401, 403, 404, 413, 415, 429 (Retry-After), 503 (Retry-After).';

@ApiTags('completions')
@ApiBearerAuth()
@ApiSecurity('api-key')
@Controller(SSE_ROUTES.base)
@UseGuards(AuthGuard)
export class SseController implements OnModuleDestroy {
  private readonly writers = new SseWriters();
  /** One function for every writer, rather than a closure per stream. */
  private readonly slowClientDropped = () => this.metrics.slowClientDropped('sse');

  constructor(
    private readonly starter: StreamStarter,
    private readonly registry: StreamRegistry,
    private readonly resumeTokens: ResumeTokenService,
    private readonly metrics: MetricsService,
    private readonly models: ModelPolicy,
    private readonly completion: CompletionService,
  ) {
    metrics.measurePendingBytes('sse', () => this.writers.pendingBytes);
  }

  onModuleDestroy(): void {
    this.writers.close();
  }

  @Post(SSE_ROUTES.start)
  @HttpCode(200)
  @ApiOperation({ summary: 'Start a stream', description: REFUSALS })
  @ApiBody({ schema: z.toJSONSchema(completionRequestSchema) as object })
  @ApiProduces('text/event-stream')
  @ApiOkResponse({ description: `${EVENT_STREAM_DESCRIPTION} Headers: X-Stream-Id, X-Resume-Token.` })
  async startStream(
    @Req() request: Request,
    @Res() response: Response,
    @JsonBody() body: unknown,
    @CurrentPrincipal() principal: Principal,
  ): Promise<void> {
    const traced = startServerSpan({
      name: `POST ${START_PATH}`,
      surface: 'sse',
      traceparent: request.headers.traceparent,
      tracestate: request.headers.tracestate,
      http: { method: 'POST', route: START_PATH },
    });
    // The stream starts inside the span's context, so its upstream attempts are children of this span.
    await traced.run(() => refusalTraced(traced, this.start(request, response, body, principal, traced)));
  }

  private async start(
    request: Request,
    response: Response,
    body: unknown,
    principal: Principal,
    traced: StreamTrace,
  ): Promise<void> {
    if (!request.is('application/json')) {
      throw new ProblemException('unsupported_media_type', 'Send the CompletionRequest as application/json.');
    }
    if (!this.models.allows(principal, ModelPolicy.requestedModel(body, this.completion.defaultModel))) {
      throw new ProblemException('forbidden', ModelPolicy.REFUSAL);
    }
    const outcome = await this.starter.start(body, principal.id, 'sse', principal.limitKey);
    if (!outcome.ok) {
      throw new ProblemException(outcome.code, outcome.message, {
        errors: outcome.violations,
        retryAfterMs: outcome.retryAfterMs,
      });
    }
    traced.stream(outcome.streamId);
    // Listening in the same tick as start: the registry buffers the start event until then.
    const listener = await unavailableAsProblem(
      this.registry.listen(outcome.streamId, principal.id, -1, 'start', principal.limitKey),
    );
    if (listener.ok) {
      response.setHeader(RESUME_TOKEN_HEADER, this.resumeTokens.issue(outcome.streamId, principal));
      this.pipe(outcome.streamId, listener, response, traced);
    } else {
      traced.end();
    }
  }

  /**
   * Resume: the events after Last-Event-ID (header, or `?lastEventId=`), then live ones. A browser's
   * EventSource, which cannot send headers, authenticates with `?resumeToken=` from the start response.
   */
  @Get(SSE_ROUTES.resume)
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
    @Req() request: Request,
    @Res() response: Response,
    @CurrentPrincipal() principal: Principal,
  ): Promise<void> {
    // The resume joins the run's trace through its own `traceparent`: the header, or `?traceparent=` for an
    // EventSource, which cannot send headers (docs/operations.md).
    const traced = startServerSpan({
      name: `GET /${SSE_ROUTES.base}/{streamId}/stream`,
      surface: 'sse',
      traceparent: request.headers.traceparent ?? request.query['traceparent'],
      http: { method: 'GET', route: `/${SSE_ROUTES.base}/${SSE_ROUTES.resume}` },
    });
    traced.stream(streamId);
    await refusalTraced(
      traced,
      this.resume(streamId, lastEventIdHeader ?? lastEventIdQuery, response, principal, traced),
    );
  }

  private async resume(
    streamId: string,
    lastEventId: string | undefined,
    response: Response,
    principal: Principal,
    traced: StreamTrace,
  ): Promise<void> {
    const lastSeq = parseLastEventId(lastEventId);
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
    traced.resumed(lastSeq);
    this.pipe(streamId, outcome, response, traced);
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

  private pipe(streamId: string, listener: StreamListener, response: Response, traced: StreamTrace): void {
    const writer = this.writers.add(response, streamId, this.slowClientDropped);
    this.metrics.connectionOpened('sse');
    const subscription = listener.events.pipe(traced.watch()).subscribe({
      next: (event) => writer.send(event),
      complete: () => writer.end(),
    });
    // The client went away (or was dropped as too slow): stop listening; the registry keeps the stream for a resume.
    response.on('close', () => {
      this.metrics.connectionClosed('sse');
      this.writers.delete(writer);
      subscription.unsubscribe();
      writer.end();
      // Only now: a replay has left the process once the response is closed, not when its events were queued.
      listener.leave();
      traced.end(response.statusCode);
    });
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

/** A refusal (or failure) before streaming ends the request's span with its code, then goes on to Nest's filter. */
async function refusalTraced(traced: StreamTrace, work: Promise<void>): Promise<void> {
  try {
    await work;
  } catch (error) {
    if (error instanceof ProblemException) {
      traced.refused(error.code, error.status);
    } else {
      traced.refused('internal', 500);
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
