import { epochNow, reasoningOf } from '@app/completion';
import { STREAM_ERROR_CODES, type StreamErrorCode } from '@app/contracts';

/** What one chunk of a relayed stream says, for the relay to act on. */
export type Observed = 'chunk' | 'done' | { failure: StreamErrorCode; message?: string };

/**
 * Reads the relayed chunks for metrics and logs, without changing them: how many answer and reasoning deltas,
 * when the first of either came (time to first token, as on our own transports), how long the model reasoned,
 * and whether the upstream gave up mid-stream (an `error` object) or sent data that is not JSON.
 */
export class ChunkObserver {
  tokens = 0;
  reasoningTokens = 0;
  firstEventAt: number | undefined;
  firstReasoningAt: number | undefined;
  firstTokenAt: number | undefined;
  finishReason: string | undefined;
  /** The upstream's own count, when it sent one (a streamed usage chunk, a non-streamed answer's `usage`). */
  usage: UpstreamUsage | undefined;

  observe(data: string, event: string | undefined): Observed {
    if (data === '[DONE]') {
      return 'done';
    }
    let chunk: RelayedChunk;
    try {
      chunk = JSON.parse(data) as RelayedChunk;
    } catch {
      return { failure: 'upstream_protocol' };
    }
    if (event === 'error' || chunk?.error !== undefined) {
      // The router ends an answer nothing could rescue with its contract code (v1.2: upstream_interrupted).
      const { code, message } = (chunk?.error ?? {}) as { code?: unknown; message?: unknown };
      return code === 'upstream_interrupted' && typeof message === 'string'
        ? { failure: code, message }
        : {
            failure: STREAM_ERROR_CODES.includes(code as StreamErrorCode)
              ? (code as StreamErrorCode)
              : 'upstream_unavailable',
          };
    }
    this.usage = usageOf(chunk?.usage) ?? this.usage;
    const choice = chunk?.choices?.[0];
    if (choice) {
      const ts = epochNow();
      if (reasoningOf(choice.delta)) {
        this.reasoningTokens += 1;
        this.firstReasoningAt ??= ts;
        this.firstEventAt ??= ts;
      }
      const delta = choice.delta;
      if ((typeof delta?.content === 'string' && delta.content !== '') || delta?.tool_calls?.length) {
        this.tokens += 1;
        this.firstTokenAt ??= ts;
        this.firstEventAt ??= ts;
      }
      this.finishReason = choice.finish_reason ?? this.finishReason;
    }
    return 'chunk';
  }
}

export interface UpstreamUsage {
  promptTokens: number;
  completionTokens: number;
  /** Of the completion tokens, those the model reasoned with (`completion_tokens_details.reasoning_tokens`). */
  reasoningTokens: number;
}

/** An OpenAI `usage` object's counts, when it is one. */
export function usageOf(usage: unknown): UpstreamUsage | undefined {
  const counts = usage as
    | {
        prompt_tokens?: unknown;
        completion_tokens?: unknown;
        completion_tokens_details?: { reasoning_tokens?: unknown };
      }
    | null
    | undefined;
  const count = (value: unknown) =>
    typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : 0;
  if (typeof counts !== 'object' || counts === null || typeof counts.completion_tokens !== 'number') {
    return undefined;
  }
  return {
    promptTokens: count(counts.prompt_tokens),
    completionTokens: count(counts.completion_tokens),
    reasoningTokens: count(counts.completion_tokens_details?.reasoning_tokens),
  };
}

/** The little of a chunk the observer reads; the rest is relayed without being looked at. */
interface RelayedChunk {
  error?: unknown;
  usage?: unknown;
  choices?: {
    delta?: { content?: unknown; tool_calls?: unknown[]; reasoning?: unknown; reasoning_content?: unknown };
    finish_reason?: string | null;
  }[];
}
