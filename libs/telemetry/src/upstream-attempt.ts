import { context, propagation, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { RouteEvent } from '@app/contracts';
import { ERROR_TYPE, GATEWAY, GEN_AI, GEN_AI_OPERATION_CHAT, STREAM_EVENTS } from './gen-ai.constants';
import { telemetry } from './telemetry';

export interface AttemptStart {
  /** The deployment's name from the upstream table. */
  deployment: string;
  /** `gen_ai.provider.name`: `openai` for an OpenAI-compatible upstream, or the provider's own name. */
  providerName: string;
  /** The model asked of this upstream (the deployment's model, not the public name). */
  requestModel: string;
  stream: boolean;
  /** Recorded only when the operator opted in to content capture; otherwise never read. */
  messages?: readonly { role: string; content: string }[];
}

export interface AttemptEnd {
  responseModel?: string;
  /** The upstream's finish reasons (`stop`, `length`, ...); absent when it ended without one. */
  finishReasons?: readonly string[];
  usage?: { input?: number; output?: number; reasoning?: number };
  /** The contract error code (or the error's type) when the attempt failed; the span is then an error. */
  error?: string;
  /** The answer's text, recorded only under content capture; the router need only gather it when `capturing`. */
  outputText?: string;
}

/** The route a stream took away from (or onto) this attempt: the contract's `route` event, or its fields. */
export type AttemptRoute = Pick<RouteEvent, 'reason' | 'model' | 'deployment' | 'code'>;

/** One upstream attempt as a CLIENT span `chat {model}`, a child of whatever span is active where it starts. */
export interface UpstreamAttempt {
  /** The first chunk came: sets `gen_ai.response.time_to_first_chunk`. Later calls do nothing. */
  firstChunk(): void;
  /** The stream moved away from or onto this attempt: a span event named for the reason. */
  routed(route: AttemptRoute): void;
  /** Ends the span with the response's figures. Later calls do nothing. */
  end(result: AttemptEnd): void;
  /** The `traceparent` (and `tracestate`) naming this attempt, for the upstream request's headers. */
  traceHeaders(): Record<string, string>;
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

const NOOP_ATTEMPT: UpstreamAttempt = Object.freeze({
  firstChunk: () => undefined,
  routed: () => undefined,
  end: () => undefined,
  traceHeaders: () => NO_HEADERS as Record<string, string>,
});

/**
 * Starts an attempt's span under the active context (the transport's server span, carried by AsyncLocalStorage
 * through the stream's subscription: nothing is passed around). With telemetry off it returns one shared object
 * whose methods do nothing, so the router can call it unconditionally.
 */
export function startAttempt(start: AttemptStart): UpstreamAttempt {
  return telemetry.enabled ? new RecordedAttempt(start) : NOOP_ATTEMPT;
}

/** Whether prompts and answers are recorded: the router gathers `outputText` only then. */
export function capturingContent(): boolean {
  return telemetry.enabled && telemetry.captureContent;
}

/** The active context's `traceparent` (and `tracestate`) as headers; empty when telemetry is off. */
export function traceHeaders(): Record<string, string> {
  if (!telemetry.enabled) {
    return NO_HEADERS as Record<string, string>;
  }
  const headers: Record<string, string> = {};
  propagation.inject(context.active(), headers);
  return headers;
}

class RecordedAttempt implements UpstreamAttempt {
  private readonly span: Span;
  private readonly startedAt = performance.now();
  private firstChunkSeen = false;
  private ended = false;

  constructor(start: AttemptStart) {
    this.span = telemetry.tracer.startSpan(`${GEN_AI_OPERATION_CHAT} ${start.requestModel}`, {
      kind: SpanKind.CLIENT,
      attributes: {
        [GEN_AI.operationName]: GEN_AI_OPERATION_CHAT,
        [GEN_AI.providerName]: start.providerName,
        [GEN_AI.requestModel]: start.requestModel,
        [GEN_AI.requestStream]: start.stream,
        [GATEWAY.deployment]: start.deployment,
      },
    });
    if (telemetry.captureContent && start.messages) {
      this.span.setAttribute(GEN_AI.inputMessages, JSON.stringify(start.messages.map(asInputMessage)));
    }
  }

  firstChunk(): void {
    if (this.firstChunkSeen || this.ended) {
      return;
    }
    this.firstChunkSeen = true;
    this.span.setAttribute(GEN_AI.responseTimeToFirstChunk, (performance.now() - this.startedAt) / 1000);
  }

  routed(route: AttemptRoute): void {
    if (this.ended) {
      return;
    }
    this.span.addEvent(STREAM_EVENTS[route.reason], routeAttributes(route));
  }

  end(result: AttemptEnd): void {
    if (this.ended) {
      return;
    }
    this.ended = true;
    const span = this.span;
    if (result.responseModel !== undefined) {
      span.setAttribute(GEN_AI.responseModel, result.responseModel);
    }
    if (result.finishReasons && result.finishReasons.length > 0) {
      span.setAttribute(GEN_AI.responseFinishReasons, [...result.finishReasons]);
    }
    const usage = result.usage;
    if (usage?.input !== undefined) span.setAttribute(GEN_AI.usageInputTokens, usage.input);
    if (usage?.output !== undefined) span.setAttribute(GEN_AI.usageOutputTokens, usage.output);
    if (usage?.reasoning !== undefined) span.setAttribute(GEN_AI.usageReasoningOutputTokens, usage.reasoning);
    if (telemetry.captureContent && result.outputText !== undefined) {
      span.setAttribute(
        GEN_AI.outputMessages,
        JSON.stringify([
          {
            role: 'assistant',
            parts: [{ type: 'text', content: result.outputText }],
            finish_reason: result.finishReasons?.[0] ?? (result.error ? 'error' : 'stop'),
          },
        ]),
      );
    }
    if (result.error !== undefined) {
      span.setAttribute(ERROR_TYPE, result.error);
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
  }

  traceHeaders(): Record<string, string> {
    const headers: Record<string, string> = {};
    propagation.inject(trace.setSpan(context.active(), this.span), headers);
    return headers;
  }
}

export function routeAttributes(route: AttemptRoute): Record<string, string> {
  const attributes: Record<string, string> = {
    [GATEWAY.routeReason]: route.reason,
    [GATEWAY.routeModel]: route.model,
    [GATEWAY.routeDeployment]: route.deployment,
  };
  if (route.code !== undefined) {
    attributes[GATEWAY.routeCode] = route.code;
  }
  return attributes;
}

/** The conventions' message shape: a role and its parts. */
function asInputMessage(message: { role: string; content: string }) {
  return { role: message.role, parts: [{ type: 'text', content: message.content }] };
}
