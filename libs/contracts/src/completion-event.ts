import type { StreamErrorCode } from './error-codes';

export type FinishReason = 'stop' | 'length' | 'content_filter' | 'tool_calls' | 'cancelled';

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
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

export interface DoneEvent extends EventBase {
  type: 'done';
  finishReason: FinishReason;
  usage: TokenUsage | null;
  timing: { ttftMs: number; durationMs: number };
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

export type CompletionEvent = StartEvent | TokenEvent | DoneEvent | ErrorEvent;
export type CompletionEventType = CompletionEvent['type'];
export type TerminalEvent = DoneEvent | ErrorEvent;

export function isTerminalEvent(event: CompletionEvent): event is TerminalEvent {
  return event.type === 'done' || event.type === 'error';
}
