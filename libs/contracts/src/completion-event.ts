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

/** (v1.2) Why a stream moved to another deployment. */
export const ROUTE_REASONS = ['fallback', 'hedge', 'continuation', 'handover'] as const;
export type RouteReason = (typeof ROUTE_REASONS)[number];

/**
 * (v1.2) The stream moved to another deployment from this seq on: the tokens after it continue the same text, no
 * repeat, no gap. `model` is the model now serving; `deployment` the deployment's name in the upstream table;
 * `code` the contract code of the fault that caused it. A stream served by its first attempt has none.
 */
export interface RouteEvent extends EventBase {
  type: 'route';
  model: string;
  deployment: string;
  reason: RouteReason;
  code?: StreamErrorCode;
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

/**
 * (v1.2) What the upstream itself said when it refused a request: its own `code`, `type` and `param` (e.g.
 * `context_length_exceeded`, `content_filter`), so a client can tell them apart. Never its message: upstream texts
 * can quote keys.
 */
export interface UpstreamRefusal {
  code?: string;
  type?: string;
  param?: string;
}

export interface StreamError {
  code: StreamErrorCode;
  message: string;
  retryable: boolean;
  retryAfterMs?: number;
  /** (v1.2) The upstream's own code, type and param when it refused the request. */
  upstream?: UpstreamRefusal;
}

export interface ErrorEvent extends EventBase {
  type: 'error';
  error: StreamError;
}

export type CompletionEvent = StartEvent | ReasoningEvent | TokenEvent | RouteEvent | DoneEvent | ErrorEvent;
export type CompletionEventType = CompletionEvent['type'];
export type TerminalEvent = DoneEvent | ErrorEvent;

export function isTerminalEvent(event: CompletionEvent): event is TerminalEvent {
  return event.type === 'done' || event.type === 'error';
}
