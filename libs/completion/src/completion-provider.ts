import type { ChatMessage, FinishReason, TokenUsage } from '@app/contracts';

export interface ProviderRequest {
  /** For log lines only: which stream this upstream request serves. */
  streamId: string;
  model: string;
  messages: ChatMessage[];
  temperature?: number;
  maxTokens?: number;
  topP?: number;
}

/**
 * What a provider yields, in order: reasoning deltas (when the model reasons), text deltas, then one finish, then
 * usage when the upstream sends it. A provider may yield them one at a time or in batches (arrays), e.g. one
 * batch per read of the upstream: that saves a promise and an iteration step per chunk.
 */
export type ProviderChunk =
  | { kind: 'reasoning'; text: string }
  | { kind: 'text'; text: string }
  | { kind: 'finish'; reason: Exclude<FinishReason, 'cancelled'> }
  | { kind: 'usage'; usage: TokenUsage };

/**
 * The seam between the completion service and an upstream. A provider knows nothing of transports;
 * it streams chunks until done, throws `UpstreamError` on failure, and stops its upstream request as
 * soon as `signal` aborts (that is what saves the tokens nobody will read).
 */
export interface CompletionProvider {
  readonly name: string;
  stream(
    request: ProviderRequest,
    signal: AbortSignal,
  ): AsyncIterable<ProviderChunk | readonly ProviderChunk[]>;
  /** Resolves when the upstream answers at all (readiness); rejects otherwise. */
  ping(signal: AbortSignal): Promise<void>;
}

/**
 * What the OpenAI-compatible surface (`/v1`) needs of an upstream that speaks OpenAI's wire format: an OpenAI request
 * body sent as it is, and the upstream's response handed back unread, to be relayed. A refusal rejects with an
 * `UpstreamError` in the gateway's own words (upstream texts can quote the key), its `status` kept.
 */
export interface OpenAiPassthrough {
  chatCompletions(body: Record<string, unknown>, signal: AbortSignal): Promise<Response>;
  models(signal: AbortSignal): Promise<Response>;
}

export function isOpenAiPassthrough(provider: object): provider is OpenAiPassthrough {
  const candidate = provider as Partial<OpenAiPassthrough>;
  return typeof candidate.chatCompletions === 'function' && typeof candidate.models === 'function';
}
