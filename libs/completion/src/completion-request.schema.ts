import { type CompletionRequest, MESSAGE_ROLES, REQUEST_LIMITS } from '@app/contracts';
import { z } from 'zod';

/**
 * The one schema of a CompletionRequest, used by every transport. `strictObject` refuses unknown
 * fields (a misspelt `max_tokens` must not be silently ignored) and limits refuse, never truncate.
 */
export const completionRequestSchema = z.strictObject({
  messages: z
    .array(
      z.strictObject({
        role: z.enum(MESSAGE_ROLES),
        content: z.string().max(REQUEST_LIMITS.maxContentLength),
      }),
    )
    .min(1)
    .max(REQUEST_LIMITS.maxMessages),
  model: z.string().trim().min(1).max(REQUEST_LIMITS.maxModelLength).optional(),
  temperature: z.number().min(REQUEST_LIMITS.temperature.min).max(REQUEST_LIMITS.temperature.max).optional(),
  maxTokens: z.number().int().min(1).max(REQUEST_LIMITS.maxTokensCap).optional(),
  topP: z.number().min(REQUEST_LIMITS.topP.min).max(REQUEST_LIMITS.topP.max).optional(),
  streamId: z.string().regex(new RegExp(REQUEST_LIMITS.streamIdPattern)).optional(),
}) satisfies z.ZodType<CompletionRequest>;

export interface RequestViolation {
  /** Dotted JSON path of the offending value, `''` for the body itself. */
  path: string;
  message: string;
}

export type ParsedRequest =
  { ok: true; request: CompletionRequest } | { ok: false; violations: RequestViolation[] };

/** Parses an untrusted payload; the violations are safe to show (they never echo the input). */
export function parseCompletionRequest(payload: unknown): ParsedRequest {
  const result = completionRequestSchema.safeParse(payload);
  if (result.success) {
    return { ok: true, request: result.data };
  }
  return {
    ok: false,
    violations: result.error.issues.slice(0, 20).map((issue) => ({
      path: issue.path.map(String).join('.'),
      message: issue.message,
    })),
  };
}

export function describeViolations(violations: RequestViolation[]): string {
  return violations.map(({ path, message }) => (path ? `${path}: ${message}` : message)).join('; ');
}
