/** The roles a chat message may have; the order of `messages` is the conversation's. */
export const MESSAGE_ROLES = ['system', 'user', 'assistant'] as const;
export type MessageRole = (typeof MESSAGE_ROLES)[number];

export interface ChatMessage {
  role: MessageRole;
  content: string;
}

/** What a client sends to start a stream, on either transport. Unknown fields are refused. */
export interface CompletionRequest {
  messages: ChatMessage[];
  model?: string;
  temperature?: number;
  maxTokens?: number;
  topP?: number;
  /** A client-chosen id; the server makes an unguessable one when absent. */
  streamId?: string;
  /**
   * (v1.2) W3C trace context of the run, on Socket.IO (HTTP sends the `traceparent` header instead): the stream's
   * trace joins the client's. An invalid one is ignored and a new trace starts (docs/operations.md).
   */
  traceparent?: string;
}

/**
 * Documented limits of a CompletionRequest. A request over any of them is refused, never truncated.
 * They are part of the public contract: raise them in a versioned change, not silently.
 */
export const REQUEST_LIMITS = {
  /** Largest accepted JSON body, in bytes (HTTP `413`; the Socket.IO packet limit is set to match). */
  maxBodyBytes: 256 * 1024,
  maxMessages: 200,
  /** Characters per message content. */
  maxContentLength: 32_000,
  maxTokensCap: 4096,
  maxModelLength: 128,
  /** A client-chosen streamId: 8 to 64 of `A-Za-z0-9_-`. */
  streamIdPattern: '^[A-Za-z0-9_-]{8,64}$',
  temperature: { min: 0, max: 2 },
  topP: { min: 0, max: 1 },
  /** `/v1`: `n`, the answers asked for in one request (each costs its own tokens under one concurrency slot). */
  maxChoices: 8,
  /** `/v1`: `top_logprobs`, as OpenAI's own API caps it. */
  maxTopLogprobs: 20,
  /** Arrays and objects nested in a JSON body (HTTP `400`; Socket.IO refuses the payload). */
  maxJsonDepth: 64,
} as const;
