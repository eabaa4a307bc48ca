import {
  bodyReader,
  type BodyReader,
  ChunkDecoder,
  readToEnd,
  safeUpstreamRequestId,
  UpstreamError,
} from '@app/completion';
import { epochNow } from '@app/clock';
import {
  startAttempt as startAttemptSpan,
  telemetry,
  type UpstreamAttempt as AttemptSpan,
} from '@app/telemetry';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import type { Deployment } from './deployments';

/** What one read of an attempt gave. */
export type AttemptRead =
  | { type: 'chunks'; chunks: ChatCompletionChunk[]; raw: string[] | undefined }
  /** The body ended, or `[DONE]` came. */
  | { type: 'end' }
  | { type: 'error'; error: UpstreamError };

const END: AttemptRead = { type: 'end' };

/** Why an attempt was started: the stream's first, a move after a failure, a hedge, a continuation. */
export type AttemptRole = 'first' | 'fallback' | 'hedge' | 'continuation';

/**
 * One upstream request of a stream, on one deployment: it opens the request, reads the body one read at a time,
 * and keeps its own deadlines (headers, first token, idle), so that a silent deployment fails this attempt, not
 * the stream. Aborting it stops its request at once, which the upstream sees as a closed connection.
 */
export class UpstreamAttempt {
  readonly startedAt = epochNow();
  firstTokenAt: number | undefined;
  /** When the last chunk came; the idle deadline counts from it. */
  lastChunkAt = 0;
  upstreamRequestId: string | undefined;
  /** Content deltas this attempt streamed (for the tokens a loser or a cut attempt consumed). */
  contentDeltas = 0;
  private readonly controller = new AbortController();
  private reader: BodyReader | undefined;
  private decoder: ChunkDecoder | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timedOut: 'first' | 'idle' | undefined;
  private settled = false;
  private closed = false;
  private idleTimeoutMs: number | undefined;
  /** A read in flight, while attempts race for the first token. */
  pending: Promise<AttemptRead> | undefined;
  /** The attempt's CLIENT span (`chat {model}`); a shared no-op when telemetry is off. */
  readonly span: AttemptSpan;
  /** What the span reports at the end, gathered from the chunks only while telemetry is on. */
  private readonly traced: boolean;
  private responseModel: string | undefined;
  private finishReasons: string[] | undefined;
  private usage: { input?: number; output?: number; reasoning?: number } | undefined;

  constructor(
    readonly deployment: Deployment,
    readonly model: string,
    readonly role: AttemptRole,
    private readonly body: Record<string, unknown>,
    readonly probe: boolean,
    private readonly firstTokenTimeoutMs: number,
    /** Keep each chunk's `data` text, for a surface that relays it unchanged (`/v1`). */
    private readonly keepRaw: boolean,
  ) {
    deployment.inFlight++;
    this.span = startAttemptSpan({
      deployment: deployment.name,
      providerName: 'openai',
      requestModel: model,
      stream: true,
      messages: body.messages as { role: string; content: string }[] | undefined,
    });
    this.traced = telemetry.enabled;
    this.timer = setTimeout(() => this.deadlinePassed(), firstTokenTimeoutMs);
    this.timer.unref();
  }

  /** The next read; a failure of any kind is answered as an `error` read, never thrown. */
  async next(): Promise<AttemptRead> {
    try {
      if (this.decoder === undefined) {
        await this.open();
      }
      const reader = this.reader as BodyReader;
      const decoder = this.decoder as ChunkDecoder;
      for (;;) {
        const read = await reader.read();
        if (read.done) {
          this.settled = true;
          return END;
        }
        const chunks = decoder.feed(read.value);
        if (chunks.length > 0) {
          this.lastChunkAt = epochNow();
          if (this.traced) {
            this.observe(chunks);
          }
          return { type: 'chunks', chunks, raw: this.keepRaw ? decoder.takeRaw() : undefined };
        }
        if (decoder.failure !== undefined) {
          return { type: 'error', error: this.failure(decoder.failure) };
        }
        if (decoder.done) {
          this.settled = true;
          void readToEnd(reader);
          return END;
        }
      }
    } catch (error) {
      return { type: 'error', error: this.failure(error) };
    }
  }

  /**
   * After a `chunks` read: a failure the decoder met after those chunks (a malformed chunk, an `error` event), or
   * `[DONE]`; the chunks before it were still answered, to be delivered first.
   */
  afterChunks(): AttemptRead | undefined {
    const decoder = this.decoder as ChunkDecoder;
    if (decoder.failure !== undefined) {
      return { type: 'error', error: this.failure(decoder.failure) };
    }
    if (decoder.done) {
      this.settled = true;
      void readToEnd(this.reader as BodyReader);
      return END;
    }
    return undefined;
  }

  /** The first real token came: from now on the idle deadline applies (checked when the timer fires, see there). */
  tokenArrived(idleTimeoutMs: number): void {
    this.firstTokenAt = this.lastChunkAt;
    this.span.firstChunk();
    this.deployment.recordTtft(this.firstTokenAt - this.startedAt);
    this.idleTimeoutMs = idleTimeoutMs;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.deadlinePassed(), idleTimeoutMs);
    this.timer.unref();
  }

  /** Stops the request (if it is still running) and releases the deployment's slot; idempotent. */
  close(error?: string): void {
    clearTimeout(this.timer);
    if (this.closed) {
      return;
    }
    this.closed = true;
    this.span.end({
      responseModel: this.responseModel,
      finishReasons: this.finishReasons,
      usage: this.usage,
      error: error ?? (this.settled ? undefined : 'cancelled'),
    });
    this.deployment.inFlight--;
    if (!this.settled) {
      // Aborting builds a DOMException: skipped when the response was read to its end.
      this.reader?.cancel();
      this.controller.abort();
    }
  }

  private async open(): Promise<void> {
    const response = await this.deployment.client.chatCompletions(
      this.body,
      this.controller.signal,
      this.traced ? this.span.traceHeaders() : undefined,
    );
    this.upstreamRequestId = safeUpstreamRequestId(response.headers.get('x-request-id'));
    const reader = bodyReader(response);
    if (!response.headers.get('content-type')?.startsWith('text/event-stream') || reader === undefined) {
      reader?.cancel();
      throw new UpstreamError('upstream_protocol', 'The model did not answer with an event stream.');
    }
    this.reader = reader;
    this.decoder = new ChunkDecoder(response.headers, this.keepRaw);
  }

  /** The span's figures: the serving model, finish reasons and usage, as the chunks carry them. */
  private observe(chunks: ChatCompletionChunk[]): void {
    for (const chunk of chunks) {
      this.responseModel ??= chunk.model;
      for (const choice of chunk.choices) {
        if (choice.finish_reason) {
          (this.finishReasons ??= []).push(choice.finish_reason);
        }
      }
      if (chunk.usage) {
        this.usage = {
          input: chunk.usage.prompt_tokens,
          output: chunk.usage.completion_tokens,
          reasoning: chunk.usage.completion_tokens_details?.reasoning_tokens ?? undefined,
        };
      }
    }
  }

  /**
   * The timer: before the first token it is the first-token deadline; after, the idle one, refreshed lazily (a
   * timer moved on every token costs more than one that, when it fires, looks at when the last chunk came).
   */
  private deadlinePassed(): void {
    if (this.idleTimeoutMs !== undefined) {
      const left = this.lastChunkAt + this.idleTimeoutMs - epochNow();
      if (left >= 1) {
        this.timer = setTimeout(() => this.deadlinePassed(), left);
        this.timer.unref();
        return;
      }
      this.timedOut = 'idle';
    } else {
      this.timedOut = 'first';
    }
    this.reader?.cancel();
    this.controller.abort();
  }

  private failure(error: unknown): UpstreamError {
    if (this.timedOut === 'first') {
      return new UpstreamError('upstream_timeout', 'The model sent no token in time.');
    }
    if (this.timedOut === 'idle') {
      return new UpstreamError('upstream_timeout', 'The model stopped sending tokens mid-answer.');
    }
    return this.deployment.client.upstreamError(error, this.decoder === undefined ? 'request' : 'stream');
  }
}

export type { ChatCompletionChunk };
