import {
  bodyReader,
  CompletionService,
  epochNow,
  type OpenAiPassthrough,
  readToEnd,
  UpstreamError,
} from '@app/completion';
import type { Principal } from '@app/auth';
import type { StreamErrorCode } from '@app/contracts';
import { MetricsService, type StreamOutcome } from '@app/metrics';
import { StreamStarter } from '@app/streams';
import { Injectable, Logger } from '@nestjs/common';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { Request, Response } from 'express';
import { once } from 'node:events';
import { parseChatRequest, type RelayedRequest } from './chat-request';
import { ChunkObserver } from './chunk-observer';
import { OpenAiError, streamedError } from './openai-error';

const STREAM_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  Connection: 'keep-alive',
  'X-Accel-Buffering': 'no',
};

const UPSTREAM_REQUEST_ID_HEADER = 'x-upstream-request-id';

/**
 * The `/v1/chat/completions` relay: validated lightly, admitted under the same limits as every other stream,
 * sent to the upstream through the provider's SDK as it is, and answered with the upstream's own JSON or chunks.
 * Each chunk's `data` is written unchanged, so every field the upstream sent reaches the client; only an
 * upstream `error` object mid-stream is replaced by the gateway's own words. A client that leaves aborts the
 * upstream request at once: there is no resume on this surface.
 */
@Injectable()
export class OpenAiRelay {
  private readonly logger = new Logger(OpenAiRelay.name);

  constructor(
    private readonly completion: CompletionService,
    private readonly starter: StreamStarter,
    private readonly metrics: MetricsService,
  ) {}

  async chatCompletions(
    request: Request,
    response: Response,
    payload: unknown,
    principal: Principal,
  ): Promise<void> {
    if (!request.is('application/json')) {
      throw OpenAiError.refusal('unsupported_media_type', 'Send the request body as application/json.');
    }
    const upstream = this.upstream();
    const chat = parseChatRequest(payload, this.completion.defaultModel);
    const run = new RelayRun(chat, request, response, this.completion.timeouts);
    // The one coupling to the limits: admitted like any stream, released when the relay ends, however it ends.
    const admission = await this.starter.admit(principal.id, () => run.stopForShutdown(), principal.limitKey);
    if (!admission.ok) {
      throw OpenAiError.refusal(admission.code, admission.message, admission.retryAfterMs);
    }
    this.metrics.streamStarted('openai');
    this.metrics.connectionOpened('openai');
    try {
      await run.execute(upstream);
    } finally {
      admission.release();
      this.metrics.connectionClosed('openai');
      this.ended(run);
    }
  }

  async models(response: Response, signal: AbortSignal): Promise<void> {
    const upstreamResponse = await this.call(() => this.upstream().models(signal));
    const text = await upstreamResponse.text();
    response.status(200).type('application/json').send(text);
  }

  private upstream(): OpenAiPassthrough {
    const passthrough = this.completion.passthrough;
    if (!passthrough) {
      throw OpenAiError.refusal(
        'not_found',
        "This gateway's model provider has no OpenAI-compatible surface.",
      );
    }
    return passthrough;
  }

  private async call(send: () => Promise<globalThis.Response>): Promise<globalThis.Response> {
    try {
      return await send();
    } catch (error) {
      throw error instanceof UpstreamError ? OpenAiError.fromUpstream(error) : error;
    }
  }

  private ended(run: RelayRun): void {
    const outcome = run.outcome(this.completion.providerName);
    this.metrics.streamEnded(outcome);
    // Ids and counts only: prompts and answers never reach a log line.
    this.logger.log(
      {
        requestId: run.requestId,
        upstreamRequestId: run.upstreamRequestId,
        transport: 'openai',
        model: run.model,
        stream: run.stream,
        outcome: outcome.errorCode ?? (outcome.cancelled ? 'cancelled' : 'done'),
        tokens: outcome.tokens,
        reasoningTokens: outcome.reasoningTokens,
        ttftMs: outcome.ttftMs === undefined ? undefined : Math.round(outcome.ttftMs),
        durationMs: Math.round(outcome.durationMs),
      },
      'openai relay ended',
    );
  }
}

/** One relayed request: its upstream call, its timeouts, and what it observed, for metrics and logs. */
class RelayRun {
  readonly requestId: string | undefined;
  upstreamRequestId: string | undefined;
  private readonly startedAt = epochNow();
  private endedAt: number | undefined;
  private readonly upstream = new AbortController();
  private readonly observer = new ChunkObserver();
  private timer: NodeJS.Timeout | undefined;
  private timedOut = false;
  private shuttingDown = false;
  private clientLeft = false;
  private errorCode: StreamErrorCode | undefined;

  constructor(
    private readonly chat: RelayedRequest,
    request: Request,
    private readonly response: Response,
    private readonly timeouts: { firstTokenMs: number; idleMs: number },
  ) {
    // pino-http's id (the client's X-Request-Id when it sent a sane one).
    const id = (request as Request & { id?: unknown }).id;
    this.requestId = typeof id === 'string' || typeof id === 'number' ? String(id) : undefined;
  }

  /** The shutdown grace is over: the upstream request stops and the client is told to retry. */
  stopForShutdown(): void {
    this.shuttingDown = true;
    this.upstream.abort();
  }

  get model(): string {
    return this.chat.model;
  }

  get stream(): boolean {
    return this.chat.stream;
  }

  async execute(passthrough: OpenAiPassthrough): Promise<void> {
    const onClose = () => {
      if (!this.response.writableFinished) {
        this.clientLeft = true;
        this.upstream.abort();
      }
    };
    this.response.on('close', onClose);
    this.arm(this.timeouts.firstTokenMs);
    try {
      const upstreamResponse = await this.send(passthrough);
      if (upstreamResponse === undefined) {
        return;
      }
      this.upstreamRequestId = upstreamResponse.headers.get('x-request-id') ?? undefined;
      if (this.upstreamRequestId) {
        this.response.setHeader(UPSTREAM_REQUEST_ID_HEADER, this.upstreamRequestId);
      }
      if (this.chat.stream) {
        await this.relayStream(upstreamResponse);
      } else {
        await this.relayJson(upstreamResponse);
      }
    } finally {
      clearTimeout(this.timer);
      this.endedAt = epochNow();
      this.response.off('close', onClose);
    }
  }

  outcome(provider: string): StreamOutcome {
    const { observer } = this;
    const end = this.endedAt ?? epochNow();
    return {
      transport: 'openai',
      provider,
      tokens: observer.tokens,
      reasoningTokens: observer.reasoningTokens,
      ttftMs: observer.firstEventAt === undefined ? undefined : observer.firstEventAt - this.startedAt,
      reasoningMs:
        observer.firstReasoningAt === undefined
          ? undefined
          : (observer.firstTokenAt ?? end) - observer.firstReasoningAt,
      durationMs: end - this.startedAt,
      cancelled: this.clientLeft,
      errorCode: this.errorCode,
    };
  }

  /** The upstream's response; undefined when the client left first. A refusal is thrown as an `OpenAiError`. */
  private async send(passthrough: OpenAiPassthrough): Promise<globalThis.Response | undefined> {
    try {
      return await passthrough.chatCompletions(this.chat.body, this.upstream.signal);
    } catch (error) {
      if (this.clientLeft) {
        return undefined;
      }
      const failure = this.shuttingDown
        ? new UpstreamError('shutting_down', 'The server is restarting; retry the request.')
        : this.timedOut
          ? new UpstreamError('upstream_timeout', 'The model did not answer in time.')
          : error instanceof UpstreamError
            ? error
            : new UpstreamError('internal', 'The gateway failed to call the model.');
      this.errorCode = failure.code;
      throw OpenAiError.fromUpstream(failure);
    }
  }

  private async relayJson(upstreamResponse: globalThis.Response): Promise<void> {
    let text: string;
    try {
      text = await upstreamResponse.text();
      clearTimeout(this.timer);
      JSON.parse(text);
    } catch (error) {
      if (this.clientLeft) {
        return;
      }
      throw this.fail(error instanceof SyntaxError ? 'upstream_protocol' : this.lostOrTimedOut());
    }
    this.response.status(200).type('application/json').send(text);
  }

  private async relayStream(upstreamResponse: globalThis.Response): Promise<void> {
    const { response } = this;
    const body = bodyReader(upstreamResponse);
    if (!upstreamResponse.headers.get('content-type')?.startsWith('text/event-stream') || !body) {
      body?.cancel();
      throw this.fail('upstream_protocol');
    }
    response.status(200);
    for (const [name, value] of Object.entries(STREAM_HEADERS)) {
      response.setHeader(name, value);
    }
    response.socket?.setNoDelay(true);
    response.flushHeaders();

    let finished = false;
    let out = '';
    const parser = createParser({
      onEvent: (message: EventSourceMessage) => {
        if (finished) {
          return;
        }
        const seen = this.observer.observe(message.data, message.event);
        if (seen === 'done') {
          finished = true;
          out += 'data: [DONE]\n\n';
        } else if (seen === 'chunk') {
          out += `data: ${message.data}\n\n`;
        } else {
          finished = true;
          this.errorCode = seen.failure;
          out += streamedError(this.streamError(seen.failure, seen.message));
        }
      },
    });
    const decoder = new TextDecoder();
    let reading = true;
    try {
      for (;;) {
        const read = await body.read();
        if (read.done) {
          reading = false;
          break;
        }
        parser.feed(decoder.decode(read.value, { stream: true }));
        if (this.observer.firstEventAt !== undefined) {
          this.arm(this.timeouts.idleMs);
        }
        if (out !== '') {
          const chunk = out;
          out = '';
          await this.write(chunk);
        }
        if (finished || this.clientLeft) {
          break;
        }
      }
      if (!finished && !this.clientLeft && this.observer.finishReason === undefined) {
        // The body ended without [DONE] or a finish: the answer is cut, and the client must not take it as whole.
        this.errorCode = 'upstream_unavailable';
        await this.write(streamedError(this.streamError('upstream_unavailable')));
      }
    } catch {
      if (!this.clientLeft) {
        const code = this.lostOrTimedOut();
        this.errorCode = code;
        await this.write(streamedError(this.streamError(code)));
      }
    } finally {
      clearTimeout(this.timer);
      if (reading && finished && this.errorCode === undefined && !this.clientLeft) {
        // [DONE] with bytes left: they are read out, as the provider does, so the upstream connection is kept for the
        // next request instead of closed.
        void readToEnd(body);
      } else {
        // We stopped reading first for another reason (an error object, the client left): the request is cut.
        if (reading) {
          body.cancel();
        }
        this.upstream.abort();
      }
      response.end();
    }
  }

  /** `message`: the router's own words for an answer it could not rescue (they name the original fault). */
  private streamError(code: StreamErrorCode, message?: string): OpenAiError {
    const messages: Partial<Record<StreamErrorCode, string>> = {
      upstream_protocol: 'The model sent a malformed stream.',
      upstream_timeout: 'The model stopped sending tokens in time.',
      upstream_unavailable: 'The connection to the model was lost.',
      shutting_down: 'The server is restarting; retry the request.',
      upstream_interrupted:
        'The answer was cut short and no deployment could continue it; retry the request.',
    };
    return OpenAiError.fromUpstream(
      new UpstreamError(code, message ?? messages[code] ?? 'The model failed mid-answer.'),
    );
  }

  private fail(code: StreamErrorCode): OpenAiError {
    this.errorCode = code;
    return this.streamError(code);
  }

  private lostOrTimedOut(): StreamErrorCode {
    if (this.shuttingDown) {
      return 'shutting_down';
    }
    return this.timedOut ? 'upstream_timeout' : 'upstream_unavailable';
  }

  /** Writes, then waits while the client is slower than the upstream: backpressure reaches the upstream's socket. */
  private async write(chunk: string): Promise<void> {
    const { response } = this;
    if (response.destroyed || response.writableEnded) {
      return;
    }
    if (!response.write(chunk)) {
      // A slow reader is not a silent model: the idle deadline waits until the client has caught up.
      clearTimeout(this.timer);
      await Promise.race([once(response, 'drain'), once(response, 'close')]);
      this.arm(this.timeouts.idleMs);
    }
  }

  /** The first-token or idle deadline: when it passes, the upstream request is aborted and reported as a timeout. */
  private arm(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.upstream.abort();
    }, ms);
    this.timer.unref();
  }
}
