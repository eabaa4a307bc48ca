import type { UpstreamError } from '@app/completion';
import type { ContinuationMode } from '@app/config';

/**
 * The router's decisions, each a small pure function with its own tests (routing-decisions.spec.ts): which
 * deployment comes next, whether a failure moves on, how long to wait, how a partial answer is sent for continuing.
 * The one place that performs attempts (upstream-router.ts) only calls these.
 */

/** What a failed attempt means for the request. */
export type FailureClass =
  /** The request itself was refused (400, 422): never retried on the same model; the client learns why. */
  | 'refused'
  /** This deployment cannot serve (401, 403, 404: its key, its model name): the next one may. */
  | 'deployment'
  /** The deployment failed for now (429, 5xx, reset, no headers, no first token, a broken stream): move on. */
  | 'transient';

export function classifyFailure(error: UpstreamError): FailureClass {
  if (error.code === 'upstream_rejected') {
    return error.status === 401 || error.status === 403 || error.status === 404 ? 'deployment' : 'refused';
  }
  return error.code === 'internal' ? 'refused' : 'transient';
}

/** The codes a fallback's `on` list is matched against: the contract code, and the upstream's own when it gave one. */
export function faultCodes(error: UpstreamError): string[] {
  return error.upstream?.code === undefined ? [error.code] : [error.code, error.upstream.code];
}

/**
 * Whether a fallback entry applies to a failure: one with `on` only to those faults (a larger-context model for
 * `context_length_exceeded`), one without to every failure that may succeed elsewhere, never to a refusal.
 */
export function fallbackApplies(
  on: readonly string[] | undefined,
  error: UpstreamError | undefined,
): boolean {
  if (on === undefined) {
    return error === undefined || classifyFailure(error) !== 'refused';
  }
  return error !== undefined && faultCodes(error).some((code) => on.includes(code));
}

/**
 * The targets in the order to try them: a weighted random order (Efraimidis-Spirakis: each drawn key is
 * `u^(1/weight)`, the largest first), so the first pick follows the weights and the rest are the fallback order
 * among equals.
 */
export function weightedOrder<T extends { weight: number }>(
  targets: readonly T[],
  random: () => number,
): T[] {
  if (targets.length === 1) {
    return [targets[0]];
  }
  return targets
    .map((target) => ({ target, key: Math.pow(random(), 1 / target.weight) }))
    .sort((a, b) => b.key - a.key)
    .map(({ target }) => target);
}

/**
 * How long to wait before trying a deployment again: what a 429 said (`Retry-After`), else an exponential backoff
 * from 500 ms, shortened by up to a quarter at random (the OpenAI SDK's own policy), capped: concurrent streams that
 * failed together do not come back in step.
 */
export function backoffMs(
  failuresInRow: number,
  retryAfterMs: number | undefined,
  random: () => number,
  capMs: number,
): number {
  if (retryAfterMs !== undefined) {
    return Math.min(retryAfterMs, capMs);
  }
  const ceiling = Math.min(capMs, 500 * 2 ** Math.max(0, failuresInRow - 1));
  return Math.round(ceiling * (0.75 + random() * 0.25));
}

/** The TTFT p95 of recent first tokens: what an adaptive hedge waits for. */
export function percentile95(samples: readonly number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.95) - 1)];
}

export function canContinue(mode: ContinuationMode): boolean {
  return mode !== 'none';
}

/**
 * The request that continues a partial answer: the text so far as the final assistant message, in the form the
 * deployment declares. vLLM, SGLang and llama.cpp take `continue_final_message` (with `add_generation_prompt`
 * off); DeepSeek and Mistral a `prefix: true` on the message. `max_tokens` is lowered by what was already spent
 * when the caller knows it, so the whole answer stays within what was asked.
 */
export function continuationBody(
  body: Readonly<Record<string, unknown>>,
  text: string,
  mode: Exclude<ContinuationMode, 'none'>,
): Record<string, unknown> {
  const messages = [...(body['messages'] as unknown[])];
  if (mode === 'prefix') {
    messages.push({ role: 'assistant', content: text, prefix: true });
    return { ...body, messages };
  }
  messages.push({ role: 'assistant', content: text });
  return { ...body, messages, continue_final_message: true, add_generation_prompt: false };
}

/** The finish reasons of a whole answer (OpenAI's, with the deprecated `function_call`). */
export const FINISH_REASONS: ReadonlySet<string> = new Set([
  'stop',
  'length',
  'content_filter',
  'tool_calls',
  'function_call',
]);

/**
 * Why a non-streamed answer cannot be relayed as whole, or undefined when it can: not JSON, or a choice without a
 * known finish reason (what a server sends when it stopped generating halfway).
 */
export function incompleteAnswer(bytes: Buffer): string | undefined {
  let answer: unknown;
  try {
    answer = JSON.parse(bytes.toString('utf8'));
  } catch {
    return 'The model sent a malformed answer.';
  }
  const choices = (answer as { choices?: unknown } | null)?.choices;
  if (!Array.isArray(choices)) {
    return 'The model sent an answer without choices.';
  }
  const finished = choices.every((choice: { finish_reason?: unknown } | null) =>
    FINISH_REASONS.has(String(choice?.finish_reason)),
  );
  return finished ? undefined : 'The model’s answer ended without a finish reason.';
}

/** The fault in words for an `upstream_interrupted` message: the gateway's own, never the upstream's. */
export function describeFault(error: UpstreamError): string {
  switch (error.code) {
    case 'upstream_timeout':
      return 'the model stopped sending tokens';
    case 'upstream_protocol':
      return 'the model sent a malformed stream';
    case 'upstream_rate_limited':
      return 'the model was rate limited';
    default:
      return 'the connection to the model was lost';
  }
}
