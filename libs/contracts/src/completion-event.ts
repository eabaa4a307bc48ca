import type { StreamErrorCode } from './error-codes';

export type FinishReason = 'stop' | 'length' | 'content_filter' | 'tool_calls' | 'cancelled';

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** (v1.1) The upstream's `completion_tokens_details.reasoning_tokens`, when it reports it; part of `completionTokens`. */
  reasoningTokens?: number;
}

interface EventBase {
  streamId: string;
  /** 0 for `start`, then one more per event of the stream. */
  seq: number;
  /** The server's clock (epoch ms, fractional) when the event was produced. */
  ts: number;
}

export interface StartEvent extends EventBase {
  type: 'start';
  seq: 0;
  model: string;
}

export interface TokenEvent extends EventBase {
  type: 'token';
  text: string;
}

/**
 * (v1.1) The model's reasoning as it streams (an upstream delta's `reasoning_content` or `reasoning`, or what a
 * `<think>` block held when the gateway extracts it), exactly and in order, before the answer's tokens.
 */
export interface ReasoningEvent extends EventBase {
  type: 'reasoning';
  text: string;
}

export interface DoneEvent extends EventBase {
  type: 'done';
  finishReason: FinishReason;
  usage: TokenUsage | null;
  timing: StreamTiming;
}

export interface StreamTiming {
  /** From the request to the first `reasoning` or `token` event: when the user first sees something. */
  ttftMs: number;
  durationMs: number;
  /** (v1.1) How long the model reasoned: first `reasoning` event to first `token` (or to the end); absent when it did not. */
  reasoningMs?: number;
}

export interface StreamError {
  code: StreamErrorCode;
  message: string;
  retryable: boolean;
  retryAfterMs?: number;
}

export interface ErrorEvent extends EventBase {
  type: 'error';
  error: StreamError;
}

export type CompletionEvent = StartEvent | ReasoningEvent | TokenEvent | DoneEvent | ErrorEvent;
export type CompletionEventType = CompletionEvent['type'];
export type TerminalEvent = DoneEvent | ErrorEvent;

export function isTerminalEvent(event: CompletionEvent): event is TerminalEvent {
  return event.type === 'done' || event.type === 'error';
}
