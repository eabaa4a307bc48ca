import { REQUEST_LIMITS } from '@app/contracts';
import { z } from 'zod';
import { OpenAiError } from './openai-error';

/** A token cap: the same bound as a CompletionRequest's `maxTokens` on SSE and Socket.IO. */
const tokenCap = z.number().int().min(1).max(REQUEST_LIMITS.maxTokensCap).nullish();

/**
 * What the gateway checks of an OpenAI chat-completions body before relaying it: what it relies on itself, and the
 * request policy every surface shares (REQUEST_LIMITS: messages, model name, token cap; here also `n` and
 * `top_logprobs`, which multiply the cost of one admitted request). Everything else (tools, `response_format`,
 * `stream_options`, vendor fields, message shapes) is the upstream's to judge, so objects are loose and unknown
 * fields pass through untouched. Size and nesting are bounded where the body is read (readJsonBody).
 */
const chatRequestSchema = z.looseObject({
  messages: z
    .array(z.looseObject({ role: z.string().min(1) }))
    .min(1)
    .max(REQUEST_LIMITS.maxMessages),
  model: z.string().trim().min(1).max(REQUEST_LIMITS.maxModelLength).optional(),
  stream: z.boolean().nullish(),
  max_tokens: tokenCap,
  max_completion_tokens: tokenCap,
  n: z.number().int().min(1).max(REQUEST_LIMITS.maxChoices).nullish(),
  top_logprobs: z.number().int().min(0).max(REQUEST_LIMITS.maxTopLogprobs).nullish(),
});

/**
 * Fields that spend or label the gateway's upstream account rather than the client's, refused unless they ask
 * for nothing (docs/auth.md, "/v1 request policy"). `user` and `safety_identifier` are not here: the gateway sets
 * them itself (see `parseChatRequest`).
 */
const ACCOUNT_FIELDS: Readonly<Record<string, { accepts: (value: unknown) => boolean; message: string }>> = {
  service_tier: {
    accepts: (value) => value === null || value === 'auto' || value === 'default',
    message: "Only 'auto' or 'default' is accepted: the gateway's upstream account decides the tier.",
  },
  store: {
    accepts: (value) => value === null || value === false,
    message: "Completions are not stored on the gateway's upstream account: omit it or send false.",
  },
  metadata: {
    accepts: (value) => value === null,
    message: "It labels stored completions on the gateway's upstream account: omit it.",
  },
};

export interface RelayedRequest {
  body: Record<string, unknown>;
  model: string;
  stream: boolean;
}

/**
 * The body as relayed: the default model filled in when it names none, and `user` (with `safety_identifier`
 * when the client sent one) set to `user`, the gateway's pseudonym for the principal, so that the upstream's
 * abuse reports point at a principal and no client can speak for another. An `OpenAiError` (400) naming the
 * field otherwise.
 */
export function parseChatRequest(payload: unknown, defaultModel: string, user: string): RelayedRequest {
  const parsed = chatRequestSchema.safeParse(payload);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const param = issue.path.join('.');
    throw invalid(
      param === '' ? 'The body must be a JSON object.' : `Invalid '${param}': ${issue.message}`,
      param === '' ? undefined : param,
    );
  }
  const body = payload as Record<string, unknown>;
  for (const [field, rule] of Object.entries(ACCOUNT_FIELDS)) {
    if (body[field] !== undefined && !rule.accepts(body[field])) {
      throw invalid(`Invalid '${field}': ${rule.message}`, field);
    }
  }
  const model = parsed.data.model ?? defaultModel;
  return {
    body: {
      ...body,
      model,
      user,
      ...(body.safety_identifier === undefined ? {} : { safety_identifier: user }),
    },
    model,
    stream: parsed.data.stream === true,
  };
}

function invalid(message: string, param: string | undefined): OpenAiError {
  return OpenAiError.refusal('invalid_request', message, undefined, param);
}
