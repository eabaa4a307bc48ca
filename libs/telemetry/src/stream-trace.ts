import {
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import type { CompletionEvent } from '@app/contracts';
import { type MonoTypeOperatorFunction, identity, tap } from 'rxjs';
import { ERROR_TYPE, GATEWAY, HTTP, STREAM_EVENTS } from './gen-ai.constants';
import { telemetry } from './telemetry';
import { routeAttributes } from './upstream-attempt';

export type Surface = 'sse' | 'socket.io' | 'openai';

export interface ServerSpanStart {
  /** `POST /api/completions/stream`, `completion:start`, ...: low-cardinality, never a stream id. */
  name: string;
  surface: Surface;
  /** The caller's W3C trace context; an unparseable one is ignored (a new trace starts), as the spec says. */
  traceparent?: unknown;
  tracestate?: unknown;
  /** For the HTTP surfaces. */
  http?: { method: string; route: string };
}

/**
 * The SERVER span of one request on a transport (a start or a resume), from the request to the end of what it
 * delivers. `run` makes it the active context, so the stream started inside it (and the router's attempt spans)
 * nest under it through AsyncLocalStorage.
 */
export interface StreamTrace {
  /** The trace id, for a response header; undefined when telemetry is off. */
  readonly traceId: string | undefined;
  run<T>(work: () => T): T;
  stream(streamId: string): void;
  /** A resume request: the events after `afterSeq` follow. */
  resumed(afterSeq: number): void;
  /** Notes route, cancel and error events of what this request delivers as span events and status. */
  watch(): MonoTypeOperatorFunction<CompletionEvent>;
  /** The request was refused or failed before streaming: `error.type`; an error status only for a server fault. */
  refused(code: string, httpStatus?: number): void;
  end(httpStatus?: number): void;
}

/** Refusals that are the server's fault, whatever the transport's framing. */
const SERVER_FAULTS: ReadonlySet<string> = new Set(['internal', 'unavailable', 'shutting_down']);

const NOOP_TRACE: StreamTrace = Object.freeze({
  traceId: undefined,
  run: <T>(work: () => T): T => work(),
  stream: () => undefined,
  resumed: () => undefined,
  watch: () => identity,
  refused: () => undefined,
  end: () => undefined,
});

/** Starts a transport's server span; with telemetry off, one shared object that does nothing. */
export function startServerSpan(start: ServerSpanStart): StreamTrace {
  return telemetry.enabled ? new RecordedStreamTrace(start) : NOOP_TRACE;
}

class RecordedStreamTrace implements StreamTrace {
  private readonly span: Span;
  private readonly context: Context;
  private ended = false;

  constructor(start: ServerSpanStart) {
    const carrier: Record<string, string> = {};
    if (typeof start.traceparent === 'string') carrier['traceparent'] = start.traceparent;
    if (typeof start.tracestate === 'string') carrier['tracestate'] = start.tracestate;
    const parent = propagation.extract(ROOT_CONTEXT, carrier);
    this.span = telemetry.tracer.startSpan(
      start.name,
      {
        kind: SpanKind.SERVER,
        attributes: {
          [GATEWAY.transport]: start.surface,
          ...(start.http && { [HTTP.requestMethod]: start.http.method, [HTTP.route]: start.http.route }),
        },
      },
      parent,
    );
    this.context = trace.setSpan(parent, this.span);
  }

  get traceId(): string {
    return this.span.spanContext().traceId;
  }

  run<T>(work: () => T): T {
    return context.with(this.context, work);
  }

  stream(streamId: string): void {
    this.span.setAttribute(GATEWAY.streamId, streamId);
  }

  resumed(afterSeq: number): void {
    this.span.addEvent(STREAM_EVENTS.resume, { [GATEWAY.resumeAfterSeq]: afterSeq });
  }

  watch(): MonoTypeOperatorFunction<CompletionEvent> {
    return tap((event) => this.observe(event));
  }

  refused(code: string, httpStatus?: number): void {
    this.span.setAttribute(ERROR_TYPE, code);
    // The HTTP conventions: a server span is an error for a 5xx, not for a client's 4xx.
    if ((httpStatus ?? 0) >= 500 || SERVER_FAULTS.has(code)) {
      this.span.setStatus({ code: SpanStatusCode.ERROR });
    }
    this.end(httpStatus);
  }

  end(httpStatus?: number): void {
    if (this.ended) {
      return;
    }
    this.ended = true;
    if (httpStatus !== undefined) {
      this.span.setAttribute(HTTP.responseStatusCode, httpStatus);
      if (httpStatus >= 500) {
        this.span.setStatus({ code: SpanStatusCode.ERROR });
      }
    }
    this.span.end();
  }

  private observe(event: CompletionEvent): void {
    if (this.ended) {
      return;
    }
    switch (event.type) {
      case 'route':
        this.span.addEvent(STREAM_EVENTS[event.reason], routeAttributes(event));
        break;
      case 'done':
        if (event.finishReason === 'cancelled') {
          this.span.addEvent(STREAM_EVENTS.cancel);
        }
        break;
      case 'error':
        this.span.setAttribute(ERROR_TYPE, event.error.code);
        this.span.setStatus({ code: SpanStatusCode.ERROR });
        break;
      default:
        break;
    }
  }
}

/**
 * Runs `work` with the trace context in `headers` (the `traceHeaders()` kept with the stream when it started) as the
 * active one: for work that carries on a stream away from its transport's span, such as a handover to another
 * instance, so that the attempt spans it starts join the stream's trace. With telemetry off, or no headers, it
 * only runs `work`.
 */
export function runInTrace<T>(headers: Readonly<Record<string, string>> | undefined, work: () => T): T {
  if (!telemetry.enabled || !headers) {
    return work();
  }
  return context.with(propagation.extract(ROOT_CONTEXT, headers), work);
}
