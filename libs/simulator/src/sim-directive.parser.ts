/**
 * Directives let a test, a demo or the benchmark steer one response from inside the prompt, which is the only
 * thing that travels unchanged through the gateway: `[sim key=value flag]`, anywhere in the last user message.
 */

export const FAULT_KINDS = [
  'rate_limit',
  'server_error',
  'unavailable',
  'unauthorized',
  'bad_request',
  'drop',
  'malformed',
  'stall',
  'content_filter',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Faults answered with an HTTP error before any streaming starts. */
export const REFUSAL_FAULTS = [
  'rate_limit',
  'server_error',
  'unavailable',
  'unauthorized',
  'bad_request',
] as const;
export type RefusalFault = (typeof REFUSAL_FAULTS)[number];
export type MidStreamFault = Exclude<FaultKind, RefusalFault>;

/**
 * How a reasoning model streams its thinking: `reasoning_content` (DeepSeek, older vLLM), `reasoning` (vLLM ≥ 0.11,
 * OpenRouter), `think` (inlined in the content as `<think>…</think>`, as R1 and Qwen3 do behind a server without
 * a reasoning parser), or `none`.
 */
export const REASONING_STYLES = ['reasoning_content', 'reasoning', 'think', 'none'] as const;
export type ReasoningStyle = (typeof REASONING_STYLES)[number];

export type FaultDirective =
  | { kind: Exclude<RefusalFault, 'rate_limit'> }
  | { kind: 'rate_limit'; retryAfterMs: number }
  | { kind: MidStreamFault; after: number };

export interface SimDirectives {
  tokens?: number;
  tokensPerSecond?: number;
  ttftMs?: number;
  jitter?: number;
  echo: boolean;
  emitTimestamps: boolean;
  fault?: FaultDirective;
  reasoning?: ReasoningStyle;
  /** Reasoning deltas before the answer. */
  think?: number;
}

export interface ParsedPrompt {
  directives: SimDirectives;
  /** The message with every directive removed, then trimmed: what `echo` sends back. */
  text: string;
}

export class InvalidDirectiveError extends Error {}

const DIRECTIVE_PATTERN = /\[sim(?=[\s\]])([^\]]*)\]/g;
const DEFAULT_FAULT_AFTER = 3;
const DEFAULT_RETRY_AFTER_MS = 1000;

export function parseDirectives(message: string): ParsedPrompt {
  const values = new Map<string, string | true>();
  const text = message
    .replace(DIRECTIVE_PATTERN, (_match, body: string) => {
      for (const word of body.split(/\s+/)) {
        if (word === '') continue;
        const equals = word.indexOf('=');
        if (equals < 0) values.set(word, true);
        else values.set(word.slice(0, equals), word.slice(equals + 1));
      }
      return '';
    })
    .trim();

  const directives: SimDirectives = {
    tokens: integer(values, 'tokens', 0),
    tokensPerSecond: decimal(values, 'tps', 0, Number.POSITIVE_INFINITY),
    ttftMs: decimal(values, 'ttft', 0, 600_000),
    jitter: decimal(values, 'jitter', 0, 1),
    echo: values.has('echo'),
    emitTimestamps: values.has('emit_ts'),
    fault: fault(values),
    reasoning: reasoningStyle(values),
    think: integer(values, 'think', 0),
  };
  return { directives, text };
}

function fault(values: ReadonlyMap<string, string | true>): FaultDirective | undefined {
  const kind = values.get('fault');
  if (kind === undefined) return undefined;
  if (kind === true || !(FAULT_KINDS as readonly string[]).includes(kind)) {
    throw new InvalidDirectiveError(`[sim fault=…] must be one of ${FAULT_KINDS.join(', ')}`);
  }
  const faultKind = kind as FaultKind;
  if (faultKind === 'rate_limit') {
    return { kind: faultKind, retryAfterMs: integer(values, 'retry_after_ms', 0) ?? DEFAULT_RETRY_AFTER_MS };
  }
  if ((REFUSAL_FAULTS as readonly string[]).includes(faultKind)) {
    return { kind: faultKind as Exclude<RefusalFault, 'rate_limit'> };
  }
  return { kind: faultKind as MidStreamFault, after: integer(values, 'after', 0) ?? DEFAULT_FAULT_AFTER };
}

function reasoningStyle(values: ReadonlyMap<string, string | true>): ReasoningStyle | undefined {
  const style = values.get('reasoning');
  if (style === undefined) return undefined;
  if (style === true || !(REASONING_STYLES as readonly string[]).includes(style)) {
    throw new InvalidDirectiveError(`[sim reasoning=…] must be one of ${REASONING_STYLES.join(', ')}`);
  }
  return style as ReasoningStyle;
}

function integer(values: ReadonlyMap<string, string | true>, key: string, min: number): number | undefined {
  const value = decimal(values, key, min, Number.MAX_SAFE_INTEGER);
  if (value !== undefined && !Number.isInteger(value)) {
    throw new InvalidDirectiveError(`[sim ${key}=…] must be a whole number`);
  }
  return value;
}

function decimal(
  values: ReadonlyMap<string, string | true>,
  key: string,
  min: number,
  max: number,
): number | undefined {
  const raw = values.get(key);
  if (raw === undefined) return undefined;
  const value = raw === true || raw.trim() === '' ? Number.NaN : Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) {
    const range =
      Number.isFinite(max) && max < Number.MAX_SAFE_INTEGER ? `from ${min} to ${max}` : `of at least ${min}`;
    throw new InvalidDirectiveError(`[sim ${key}=…] must be a number ${range}, got ${String(raw)}`);
  }
  return value;
}
