/**
 * The OpenAI chat-completions wire format, byte for byte as the real API sends it (key order included), so that
 * the official SDK and any hand-written parser treat the simulator as the real thing.
 */

export type FinishReason = 'stop' | 'length' | 'content_filter';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** As OpenAI sends it on every usage; `reasoning_tokens` is part of `completion_tokens`. */
  completion_tokens_details: {
    reasoning_tokens: number;
    audio_tokens: number;
    accepted_prediction_tokens: number;
    rejected_prediction_tokens: number;
  };
}

export interface OpenAiError {
  /** Azure's refusals add fields (`status`, `innererror`) and may have a null `type`. */
  error: {
    message: string;
    type: string | null;
    param: string | null;
    code: string | null;
    [more: string]: unknown;
  };
}

export const SYSTEM_FINGERPRINT = 'fp_simulator';
export const SSE_DONE = 'data: [DONE]\n\n';

export function openAiError(
  message: string,
  type: string,
  param: string | null = null,
  code: string | null = null,
): OpenAiError {
  return { error: { message, type, param, code } };
}

/**
 * Every chunk of one stream shares its head and tail; only the delta differs. Building the constant parts once
 * per stream leaves one small `JSON.stringify` (done once per piece, cached) and a concatenation per token.
 */
export class ChunkFormat {
  private readonly head: string;
  private readonly tail: string;
  private readonly usageTail: string;

  constructor(
    private readonly id: string,
    private readonly created: number,
    private readonly model: string,
    private readonly includeUsage: boolean,
  ) {
    this.head =
      `data: {"id":${JSON.stringify(id)},"object":"chat.completion.chunk","created":${created},` +
      `"model":${JSON.stringify(model)},"system_fingerprint":"${SYSTEM_FINGERPRINT}","choices":[{"index":0,"delta":`;
    // With include_usage, OpenAI sends `"usage":null` on every chunk before the usage chunk.
    this.usageTail = includeUsage ? ',"usage":null}\n\n' : '}\n\n';
    this.tail = `,"logprobs":null,"finish_reason":null}]${this.usageTail}`;
  }

  role(): string {
    return `${this.head}{"role":"assistant","content":""}${this.tail}`;
  }

  /** `contentJson` is the JSON string literal of the delta text. */
  content(contentJson: string): string {
    return `${this.head}{"content":${contentJson}}${this.tail}`;
  }

  /** A reasoning delta as DeepSeek sends it (`content` null beside it). */
  reasoningContent(reasoningJson: string): string {
    return `${this.head}{"content":null,"reasoning_content":${reasoningJson}}${this.tail}`;
  }

  /** A reasoning delta as vLLM ≥ 0.11 and OpenRouter send it. */
  reasoning(reasoningJson: string): string {
    return `${this.head}{"reasoning":${reasoningJson}}${this.tail}`;
  }

  /** The finish chunk, then the usage chunk when asked for, then `[DONE]`. */
  end(finishReason: FinishReason, usage: Usage): string {
    let frames = `${this.head}{},"logprobs":null,"finish_reason":"${finishReason}"}]${this.usageTail}`;
    if (this.includeUsage) {
      frames +=
        `data: {"id":${JSON.stringify(this.id)},"object":"chat.completion.chunk","created":${this.created},` +
        `"model":${JSON.stringify(this.model)},"system_fingerprint":"${SYSTEM_FINGERPRINT}","choices":[],` +
        `"usage":${JSON.stringify(usage)}}\n\n`;
    }
    return frames + SSE_DONE;
  }
}

export function chatCompletion(
  id: string,
  created: number,
  model: string,
  content: string,
  finishReason: FinishReason | null,
  usage: Usage | undefined,
  /** Fields beside `content` in the message: the reasoning of a reasoning model. */
  reasoning: Record<string, string> = {},
): object {
  return {
    id,
    object: 'chat.completion',
    created,
    model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content, ...reasoning, refusal: null, annotations: [] },
        logprobs: null,
        finish_reason: finishReason,
      },
    ],
    ...(usage === undefined ? {} : { usage }),
    system_fingerprint: SYSTEM_FINGERPRINT,
  };
}
