import type { TokenUsage } from '@app/contracts';
import { Logger } from '@nestjs/common';
import OpenAI from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type {
  CompletionProvider,
  OpenAiPassthrough,
  ProviderChunk,
  ProviderRequest,
} from './completion-provider';
import { bodyReader, createLeanFetch, readToEnd } from './lean-fetch';
import { ThinkTagSplitter } from './think-tag-splitter';
import { UpstreamError, upstreamRefusal } from './upstream.error';

export interface OpenAiCompatibleOptions {
  /** Any OpenAI-compatible chat-completions base URL (OpenAI, Azure OpenAI, vLLM, Ollama, LM Studio, the simulator). */
  baseURL?: string;
  apiKey?: string;
  /** Retries before the first byte of a stream (429, 5xx, connection errors), with the SDK's jittered backoff that honours `retry-after-ms` and `retry-after`. */
  maxRetries: number;
  /** Shown in `/api/info` and metrics. */
  name?: string;
  /** Reasoning inlined as `<think>…</think>` at the start of the content becomes reasoning chunks. Off by default. */
  extractThinkTags?: boolean;
  /**
   * What the SDK sends its requests with. Default: the lean fetch (`lean-fetch.ts`), or Node's global fetch when
   * the environment names a proxy (`HTTPS_PROXY`, `HTTP_PROXY`), which only the global fetch honours.
   */
  fetch?: typeof fetch;
  /** Sent with every request (the SDK's `defaultHeaders`). */
  headers?: Record<string, string>;
  /**
   * How long a request may wait for the upstream's response headers before it fails as a timeout (the SDK's
   * `timeout`, which ends when the headers come; the body's deadlines are the caller's). Default: the SDK's 10 min.
   */
  headersTimeoutMs?: number;
}

/** Proxy settings are honoured by Node's global fetch (with NODE_USE_ENV_PROXY), not by the lean fetch. */
function proxyConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  return ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'].some((name) => Boolean(env[name]));
}

const FINISH_REASONS = new Set(['stop', 'length', 'content_filter', 'tool_calls']);

/**
 * Streams through the official `openai` SDK: it builds and sends the request, retries it with backoff and maps
 * refusals to typed errors. The stream's body is decoded here (`decode`); this class maps the chunks to
 * `ProviderChunk`s and every error to the contract's codes.
 */
export class OpenAiCompatibleProvider implements CompletionProvider, OpenAiPassthrough {
  readonly name: string;
  private readonly client: OpenAI;
  private readonly logger = new Logger(OpenAiCompatibleProvider.name);

  constructor(private readonly options: OpenAiCompatibleOptions) {
    this.name = options.name ?? 'openai';
    this.client = new OpenAI({
      baseURL: options.baseURL,
      // The SDK insists on a key; local servers (vLLM, Ollama) ignore it.
      apiKey: options.apiKey ?? 'unused',
      maxRetries: options.maxRetries,
      defaultHeaders: options.headers,
      ...(options.headersTimeoutMs === undefined ? {} : { timeout: options.headersTimeoutMs }),
      fetch: options.fetch ?? (proxyConfigured() ? undefined : createLeanFetch()),
      // Our own first-token and idle timeouts apply; the SDK's 10-minute request timeout stays as a backstop.
      logger: {
        error: (message) => this.logger.error(message),
        warn: (message) => this.logger.warn(message),
        info: (message) => this.logger.log(message),
        debug: (message) => this.logger.debug(message),
      },
      logLevel: 'warn',
    });
  }

  /**
   * One batch of chunks per read of the upstream body: every chunk that read completed, in order. A read usually
   * carries one chunk, under load several; either way the consumer pays one promise and one generator step per
   * read, not per chunk. This generator is the only one between the socket and the CompletionService: it reads
   * the body itself (`bodyReader`), decodes synchronously (`ChunkDecoder`) and maps in place (`ChunkMapper`).
   *
   * After `[DONE]` the rest of the body is read out in the background, as the SDK's `Stream` reads it, rather than
   * cancelled: cancelling a body whose end has not arrived yet aborts the fetch, which builds an AbortError and
   * closes the upstream connection, so the next stream paid for a new one (both showed in the stream-start profile).
   * A body left unread (the consumer stopped, or the upstream failed) is cancelled.
   */
  async *stream(request: ProviderRequest, signal: AbortSignal): AsyncGenerator<ProviderChunk[]> {
    const response = await this.open(request, signal);
    const reader = bodyReader(response);
    const decoder = new ChunkDecoder(response.headers);
    const mapper = new ChunkMapper(this.options.extractThinkTags ? new ThinkTagSplitter() : undefined);
    let settled = reader === undefined;
    try {
      while (reader !== undefined) {
        const read = await reader.read();
        if (read.done) {
          settled = true;
          break;
        }
        const batch = mapper.map(decoder.feed(read.value));
        if (batch.length > 0) {
          yield batch;
        }
        const failure = mapper.failure ?? decoder.failure;
        if (failure !== undefined) {
          throw failure;
        }
        if (decoder.done) {
          settled = true;
          void readToEnd(reader);
          break;
        }
      }
    } catch (error) {
      throw this.upstreamError(error, 'stream');
    } finally {
      if (!settled) {
        reader?.cancel();
      }
    }
    if (!mapper.finished && !signal.aborted) {
      throw new UpstreamError('upstream_protocol', 'The model stream ended without a finish reason.');
    }
  }

  /** The SDK sends the request, retries it before the first byte and turns refusals into APIErrors. */
  private async open(request: ProviderRequest, signal: AbortSignal): Promise<Response> {
    try {
      // `asResponse` hands over the body unread: `stream` reads it (see there, and ChunkDecoder for why).
      const response = await this.client.chat.completions
        .create(
          {
            model: request.model,
            messages: request.messages,
            stream: true,
            stream_options: { include_usage: true },
            temperature: request.temperature,
            top_p: request.topP,
            max_tokens: request.maxTokens,
          },
          { signal },
        )
        .asResponse();
      this.logger.log(
        { streamId: request.streamId, upstreamRequestId: response.headers.get('x-request-id') },
        'upstream answered',
      );
      return response;
    } catch (error) {
      if (error instanceof OpenAI.APIError && error.status !== undefined) {
        this.logger.warn(
          { streamId: request.streamId, upstreamRequestId: error.requestID, status: error.status },
          'upstream refused the request',
        );
      }
      throw this.upstreamError(error, 'request');
    }
  }

  /**
   * The body goes through the SDK as it is (tools, `response_format`, vendor fields): the SDK adds the upstream key,
   * retries before the first byte and turns refusals into typed errors; `asResponse` hands over the body unread.
   * `headers` go with this request only (the attempt's `traceparent`).
   */
  async chatCompletions(
    body: Record<string, unknown>,
    signal: AbortSignal,
    headers?: Record<string, string>,
  ): Promise<Response> {
    try {
      return await this.client.chat.completions
        .create(body as unknown as OpenAI.ChatCompletionCreateParams, { signal, headers })
        .asResponse();
    } catch (error) {
      if (error instanceof OpenAI.APIError && error.status !== undefined) {
        this.logger.warn(
          { upstreamRequestId: error.requestID, status: error.status },
          'upstream refused a relayed request',
        );
      }
      throw this.upstreamError(error, 'request');
    }
  }

  async models(signal: AbortSignal): Promise<Response> {
    try {
      return await this.client.models.list({ signal }).asResponse();
    } catch (error) {
      throw this.upstreamError(error, 'request');
    }
  }

  async ping(signal: AbortSignal): Promise<void> {
    await this.client.models.list({ signal, maxRetries: 0 });
  }

  /** Any failure of a request (`request`) or of reading its body (`stream`), in the contract's codes. */
  upstreamError(error: unknown, phase: 'request' | 'stream'): UpstreamError {
    if (error instanceof UpstreamError) {
      return error;
    }
    if (error instanceof OpenAI.APIConnectionTimeoutError) {
      return new UpstreamError('upstream_timeout', 'The model did not answer in time.');
    }
    if (error instanceof OpenAI.APIConnectionError) {
      return new UpstreamError(
        'upstream_unavailable',
        phase === 'request' ? 'The model could not be reached.' : 'The connection to the model was lost.',
      );
    }
    if (error instanceof OpenAI.RateLimitError) {
      return new UpstreamError(
        'upstream_rate_limited',
        'The model is rate limited.',
        retryAfterMs(error.headers),
        429,
      );
    }
    if (error instanceof OpenAI.APIError && error.status !== undefined) {
      return this.fromStatus(error.status, error);
    }
    if (error instanceof OpenAI.APIError) {
      // An `error` object inside an otherwise healthy stream: the upstream gave up mid-answer.
      return new UpstreamError('upstream_unavailable', 'The model reported an error mid-stream.');
    }
    if (error instanceof SyntaxError) {
      return new UpstreamError('upstream_protocol', 'The model sent a malformed stream.');
    }
    if (phase === 'stream') {
      // undici's "terminated" and friends: the body broke off.
      return new UpstreamError('upstream_unavailable', 'The connection to the model was lost.');
    }
    this.logger.error(`unexpected upstream failure: ${error instanceof Error ? error.name : typeof error}`);
    return new UpstreamError('internal', 'The gateway failed to call the model.');
  }

  /** Upstream 4xx texts can quote the API key (OpenAI masks only part of it): say what happened in our own words. */
  private fromStatus(status: number, error: InstanceType<typeof OpenAI.APIError>): UpstreamError {
    const upstream = upstreamRefusal(error);
    const refused = (code: UpstreamError['code'], message: string, retryAfter?: number) =>
      new UpstreamError(code, message, retryAfter, status, upstream);
    switch (status) {
      case 400:
      case 422:
        return refused('upstream_rejected', `The model refused the request (${status}).`);
      case 401:
      case 403:
        return refused('upstream_rejected', `The model refused the gateway's credentials (${status}).`);
      case 404:
        return refused('upstream_rejected', 'The model does not exist or is not available (404).');
      case 408:
        return refused('upstream_timeout', 'The model timed out (408).');
      case 429:
        return refused('upstream_rate_limited', 'The model is rate limited.', retryAfterMs(error.headers));
      default:
        return status >= 500
          ? refused('upstream_unavailable', `The model is unavailable (${status}).`)
          : refused('upstream_rejected', `The model refused the request (${status}).`);
    }
  }
}

/** The two spellings of a reasoning delta: `reasoning_content` (DeepSeek, older vLLM), `reasoning` (vLLM ≥ 0.11, OpenRouter). */
type ReasoningDelta = ChatCompletionChunk.Choice.Delta & { reasoning_content?: unknown; reasoning?: unknown };

/**
 * A delta's reasoning text. Servers in transition between the two names send both with the same text: that is one
 * delta of reasoning, not two; `reasoning_content` is read first.
 */
export function reasoningOf(
  delta: { reasoning_content?: unknown; reasoning?: unknown } | undefined,
): string | undefined {
  if (typeof delta?.reasoning_content === 'string' && delta.reasoning_content !== '') {
    return delta.reasoning_content;
  }
  return typeof delta?.reasoning === 'string' && delta.reasoning !== '' ? delta.reasoning : undefined;
}

/** `TextDecoder.decode`'s options for every read but the last: one object, not one per read. */
const STREAMING: { stream: boolean } = { stream: true };

/** What a chunk may carry instead: OpenAI's way of giving up mid-answer. */
type UpstreamData = ChatCompletionChunk & { error?: unknown };

/**
 * The body's chat-completion chunks, up to `data: [DONE]`, decoded synchronously as the bytes come: `feed` takes one
 * read's bytes and answers the chunks they completed (an event split across reads comes out of the read that ends
 * it). The SDK's own `Stream` does the same through four nested async generators per chunk (bytes, lines, messages,
 * chunks), which profiling showed to be a fifth of the gateway's CPU under load; eventsource-parser does it here.
 *
 * Nothing after `[DONE]` counts (`done`). An `error` event or an `error` object in the data is the upstream giving up
 * (`OpenAI.APIError`, as the SDK reports it); unparseable data is a `SyntaxError`. Either is kept in `failure`, and
 * the chunks before it in the same read are still answered, for the caller to hand on before it throws.
 */
export class ChunkDecoder {
  done = false;
  failure: unknown;
  private parsed: ChatCompletionChunk[] = [];
  /** With `keepRaw`: each parsed chunk's `data` text, in step with `parsed`. */
  private raw: string[] = [];
  private readonly text = new TextDecoder();
  private readonly parser = createParser({
    onEvent: (message: EventSourceMessage) => {
      if (this.done || this.failure !== undefined) {
        return;
      }
      if (message.data === '[DONE]') {
        this.done = true;
        return;
      }
      try {
        const data = JSON.parse(message.data) as UpstreamData;
        if (message.event === 'error' || data.error !== undefined) {
          this.failure = new OpenAI.APIError(undefined, data.error ?? data, undefined, this.headers);
        } else {
          this.parsed.push(data);
          if (this.keepRaw) {
            this.raw.push(message.data);
          }
        }
      } catch (error) {
        this.failure = error;
      }
    },
  });

  constructor(
    private readonly headers: Headers,
    /** Keep each chunk's `data` text (`takeRaw`), for a surface that relays chunks unchanged. */
    private readonly keepRaw = false,
  ) {}

  /** The `data` texts of the chunks the last `feed` answered (with `keepRaw`). */
  takeRaw(): string[] {
    const raw = this.raw;
    this.raw = [];
    return raw;
  }

  feed(bytes: Uint8Array): ChatCompletionChunk[] {
    if (this.done || this.failure !== undefined) {
      return [];
    }
    this.parser.feed(this.text.decode(bytes, STREAMING));
    const parsed = this.parsed;
    if (parsed.length > 0) {
      this.parsed = [];
    }
    return parsed;
  }
}

/**
 * Chat-completion chunks to ProviderChunks: reasoning, text (through the think-tag splitter when it is on), the
 * finish, usage. `finished` says whether a finish came; an unknown finish reason is a `failure`.
 */
export class ChunkMapper {
  finished = false;
  /** Set when a chunk cannot be mapped; what came before it is still answered. */
  failure: UpstreamError | undefined;

  constructor(private readonly thinkTags: ThinkTagSplitter | undefined) {}

  map(chunks: ChatCompletionChunk[]): ProviderChunk[] {
    const out: ProviderChunk[] = [];
    for (const chunk of chunks) {
      // Chunks with empty `choices` carry usage (include_usage) or nothing at all.
      const choice = chunk.choices[0];
      if (choice) {
        const delta = choice.delta as ReasoningDelta | undefined;
        const reasoning = reasoningOf(delta);
        if (reasoning) {
          out.push({ kind: 'reasoning', text: reasoning });
        }
        const text = delta?.content;
        if (text) {
          if (this.thinkTags) {
            out.push(...this.thinkTags.push(text));
          } else {
            out.push({ kind: 'text', text });
          }
        }
        if (choice.finish_reason) {
          if (this.thinkTags) {
            out.push(...this.thinkTags.end());
          }
          if (!FINISH_REASONS.has(choice.finish_reason)) {
            this.failure = new UpstreamError('upstream_protocol', 'The model sent an unknown finish reason.');
            return out;
          }
          this.finished = true;
          out.push({ kind: 'finish', reason: choice.finish_reason as 'stop' });
        }
      }
      if (chunk.usage) {
        out.push({ kind: 'usage', usage: toUsage(chunk.usage) });
      }
    }
    return out;
  }
}

function toUsage(usage: OpenAI.CompletionUsage): TokenUsage {
  const reasoningTokens = usage.completion_tokens_details?.reasoning_tokens;
  return {
    promptTokens: usage.prompt_tokens,
    completionTokens: usage.completion_tokens,
    totalTokens: usage.total_tokens,
    ...(typeof reasoningTokens === 'number' ? { reasoningTokens } : {}),
  };
}

/** `retry-after-ms` (OpenAI's own) wins over `retry-after`, which is seconds or an HTTP date. */
export function retryAfterMs(headers: Headers | undefined, now = Date.now()): number | undefined {
  const milliseconds = Number.parseFloat(headers?.get('retry-after-ms') ?? '');
  if (Number.isFinite(milliseconds) && milliseconds >= 0) {
    return Math.round(milliseconds);
  }
  const retryAfter = headers?.get('retry-after');
  if (!retryAfter) {
    return undefined;
  }
  const seconds = Number(retryAfter);
  if (Number.isFinite(seconds) && seconds >= 0) {
    return Math.round(seconds * 1000);
  }
  const date = Date.parse(retryAfter);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
