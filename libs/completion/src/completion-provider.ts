import type { ChatMessage, FinishReason, RouteReason, StreamErrorCode, TokenUsage } from '@app/contracts';

export interface ProviderRequest {
  /** For log lines only: which stream this upstream request serves. */
  streamId: string;
  model: string;
  messages: ChatMessage[];
  temperature?: number;
  maxTokens?: number;
  topP?: number;
  /**
   * (v1.2) Continue an answer another process started (a handover): `text` is the answer delivered so far. A provider
   * that can continue answers only the rest, after a `route` chunk; one that cannot throws.
   */
  continueFrom?: { text: string; reasoningShown?: boolean; reason: 'handover' };
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
  | { kind: 'usage'; usage: TokenUsage }
  /** (v1.2) The answer moved to another deployment from here on; what follows continues the same text. */
  | { kind: 'route'; model: string; deployment: string; reason: RouteReason; code?: StreamErrorCode };

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
  /**
   * (v1.2) True when the provider enforces the first-token and idle deadlines itself, per upstream attempt (the
   * router does, so that a silent deployment moves on rather than ends the stream): the service then sets none.
   */
  readonly ownsTimeouts?: boolean;
  /** (v1.2) Whether the model names a model this provider serves; absent: every name is tried upstream. */
  knowsModel?(model: string): boolean;
  /** (v1.2) Whether some deployment of the model can continue a partial answer (`continueFrom`). */
  canContinue?(model: string): boolean;
}

/**
 * What the OpenAI-compatible surface (`/v1`) needs of an upstream that speaks OpenAI's wire format: an OpenAI request
 * body sent as it is, and the upstream's response handed back unread, to be relayed. A refusal rejects with an
 * `UpstreamError` in the gateway's own words (upstream texts can quote the key), its `status` kept.
 */
export interface OpenAiPassthrough {
  chatCompletions(
    body: Record<string, unknown>,
    signal: AbortSignal,
    options?: PassthroughOptions,
  ): Promise<Response>;
  models(signal: AbortSignal): Promise<Response>;
}

/** What a passthrough request carries besides its body; one object, since the relay and the router each set a part. */
export interface PassthroughOptions {
  /**
   * A non-streamed answer may be read before it is handed back (the router reads it whole to tell a broken answer
   * from a good one while another deployment can still serve); `maxResponseBytes` bounds what it holds.
   */
  maxResponseBytes?: number;
  /** Headers for this request only (an upstream attempt's `traceparent`). */
  headers?: Record<string, string>;
}

export function isOpenAiPassthrough(provider: object): provider is OpenAiPassthrough {
  const candidate = provider as Partial<OpenAiPassthrough>;
  return typeof candidate.chatCompletions === 'function' && typeof candidate.models === 'function';
}
