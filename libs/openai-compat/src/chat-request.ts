import { REQUEST_LIMITS } from '@app/contracts';
import { z } from 'zod';
import { OpenAiError } from './openai-error';

/**
 * What the gateway checks of an OpenAI chat-completions body before relaying it: only what it relies on itself.
 * Everything else (tools, `response_format`, `stream_options`, vendor fields, message shapes) is the upstream's to
 * judge, so objects are loose and unknown fields pass through untouched. Size is bounded by the body limit.
 */
const chatRequestSchema = z.looseObject({
  messages: z
    .array(z.looseObject({ role: z.string().min(1) }))
    .min(1)
    .max(REQUEST_LIMITS.maxMessages),
  model: z.string().trim().min(1).max(REQUEST_LIMITS.maxModelLength).optional(),
  stream: z.boolean().nullish(),
});

export interface RelayedRequest {
  body: Record<string, unknown>;
  model: string;
  stream: boolean;
}

/** The body with the default model filled in when it names none; an `OpenAiError` (400) naming the field otherwise. */
export function parseChatRequest(payload: unknown, defaultModel: string): RelayedRequest {
  const parsed = chatRequestSchema.safeParse(payload);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const param = issue.path.join('.');
    throw OpenAiError.refusal(
      'invalid_request',
      param === '' ? 'The body must be a JSON object.' : `Invalid '${param}': ${issue.message}`,
      undefined,
      param === '' ? undefined : param,
    );
  }
  const model = parsed.data.model ?? defaultModel;
  return { body: { ...(payload as object), model }, model, stream: parsed.data.stream === true };
}
