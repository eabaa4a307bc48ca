import type { CompletionEvent, FinishReason, RouteReason, StreamTiming } from '@app/contracts';
import type { TransportName } from '../transport/completion-transport';
import type { ConnectionInfo } from '../transport/connection-info';

export type RunStatus = 'connecting' | 'waiting' | 'streaming' | 'done' | 'cancelled' | 'error';

export interface TokenArrival {
  seq: number;
  /** The server's clock when the token was produced (event `ts`). */
  serverTs: number;
  /** The client's clock (epoch ms, high resolution) when the event was handed to us. */
  arrivedAt: number;
}

export interface LaneError {
  code: string;
  message: string;
  retryable: boolean;
  retryAfterMs?: number;
}

/** (v1.2) Where the stream moved to another deployment: after `at` characters of the answer, and why. */
export interface RouteMark {
  at: number;
  reason: RouteReason;
  model: string;
  deployment: string;
  code?: string;
}

/** One stream over one transport: what it has said so far and when each part arrived. */
export interface Lane {
  transport: TransportName;
  streamId: string;
  status: RunStatus;
  model: string | null;
  text: string;
  /** What the model thought before answering (reasoning events), when it reasoned. */
  reasoning: string;
  /** The client's clock when the first reasoning event arrived. */
  firstReasoningAt: number | null;
  sentAt: number;
  arrivals: readonly TokenArrival[];
  eventsReceived: number;
  endedAt: number | null;
  finishReason: FinishReason | null;
  serverTiming: StreamTiming | null;
  error: LaneError | null;
  /**
   * Picked up again after a page reload: its events were replayed from the start, in a burst, so their
   * arrival times say nothing about the latency from send.
   */
  resumed: boolean;
  /** SSE: the credential the server gave for resuming this stream (`X-Resume-Token`), once known. */
  resumeToken: string | null;
  /** The connection that carried the stream, once the transport knows (SSE: after the response ended). */
  connection: ConnectionInfo | null;
  /** (v1.2) Each move to another deployment, in order. */
  routes: readonly RouteMark[];
  /** (v1.2) The deployment serving the answer since the last move; null while the first attempt serves. */
  servedBy: { model: string; deployment: string } | null;
}

export interface ReceivedEvent {
  event: CompletionEvent;
  arrivedAt: number;
}

export function newLane(transport: TransportName, streamId: string, sentAt: number): Lane {
  return {
    transport,
    streamId,
    status: 'connecting',
    model: null,
    text: '',
    reasoning: '',
    firstReasoningAt: null,
    sentAt,
    arrivals: [],
    eventsReceived: 0,
    endedAt: null,
    finishReason: null,
    serverTiming: null,
    error: null,
    resumed: false,
    resumeToken: null,
    connection: null,
    routes: [],
    servedBy: null,
  };
}

export function isFinished(status: RunStatus): boolean {
  return status === 'done' || status === 'cancelled' || status === 'error';
}

/** Folds a batch of received events into a lane, immutably; events after the terminal one are ignored. */
export function applyEvents(lane: Lane, batch: readonly ReceivedEvent[]): Lane {
  if (batch.length === 0 || isFinished(lane.status)) return lane;
  let { status, model, text, reasoning, firstReasoningAt, endedAt, finishReason, serverTiming, error } = lane;
  let { routes, servedBy } = lane;
  const arrivals: TokenArrival[] = [];
  let counted = 0;
  for (const { event, arrivedAt } of batch) {
    if (isFinished(status)) break;
    counted++;
    switch (event.type) {
      case 'start':
        model = event.model;
        if (status === 'connecting') status = 'waiting';
        break;
      case 'reasoning':
        reasoning += event.text;
        firstReasoningAt ??= arrivedAt;
        status = 'streaming';
        break;
      case 'token':
        text += event.text;
        arrivals.push({ seq: event.seq, serverTs: event.ts, arrivedAt });
        status = 'streaming';
        break;
      case 'route':
        routes = [
          ...routes,
          {
            at: text.length,
            reason: event.reason,
            model: event.model,
            deployment: event.deployment,
            ...(event.code === undefined ? {} : { code: event.code }),
          },
        ];
        servedBy = { model: event.model, deployment: event.deployment };
        break;
      case 'done':
        status = event.finishReason === 'cancelled' ? 'cancelled' : 'done';
        finishReason = event.finishReason;
        serverTiming = event.timing;
        endedAt = arrivedAt;
        break;
      case 'error':
        status = 'error';
        error = { ...event.error };
        endedAt = arrivedAt;
        break;
    }
  }
  return {
    ...lane,
    status,
    model,
    text,
    reasoning,
    firstReasoningAt,
    endedAt,
    finishReason,
    serverTiming,
    error,
    routes,
    servedBy,
    arrivals: arrivals.length > 0 ? [...lane.arrivals, ...arrivals] : lane.arrivals,
    eventsReceived: lane.eventsReceived + counted,
  };
}

/** The server accepted the request (HTTP 200, or a positive ack) before any event reached us. */
export function markAccepted(lane: Lane): Lane {
  return lane.status === 'connecting' ? { ...lane, status: 'waiting' } : lane;
}

export function failLane(lane: Lane, error: LaneError, at: number): Lane {
  if (isFinished(lane.status)) return lane;
  return { ...lane, status: 'error', error, endedAt: at };
}

/** A lane we stopped listening to without hearing its end (the cancel went unanswered). */
export function abandonLane(lane: Lane, at: number): Lane {
  if (isFinished(lane.status)) return lane;
  return { ...lane, status: 'cancelled', finishReason: 'cancelled', endedAt: at };
}
