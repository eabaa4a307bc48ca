import type { CompletionEvent } from './completion-event';
import type { CompletionRequest } from './completion-request';
import type { RefusalCode } from './error-codes';
import type { ServerTime } from './server-info';

export const SOCKET_NAMESPACE = '/completions';
export const SOCKET_PATH = '/socket.io';

export const SOCKET_EVENTS = {
  start: 'completion:start',
  cancel: 'completion:cancel',
  resume: 'completion:resume',
  event: 'completion',
  clockProbe: 'clock:probe',
} as const;

export interface AckError {
  code: RefusalCode;
  message: string;
  retryAfterMs?: number;
}

export type StartAck = { ok: true; streamId: string } | { ok: false; error: AckError };
export type SimpleAck = { ok: true } | { ok: false; error: AckError };

export interface CancelPayload {
  streamId: string;
}

export interface ResumePayload {
  streamId: string;
  /** The last seq the client holds; -1 replays from the start. */
  lastSeq: number;
  /** (v1.2) W3C trace context: the resume joins the run's trace (docs/operations.md). */
  traceparent?: string;
}

/** Events a client emits. Payloads are typed here and validated on the server all the same. */
export interface ClientToServerEvents {
  'completion:start': (request: CompletionRequest, ack: (result: StartAck) => void) => void;
  'completion:cancel': (payload: CancelPayload, ack: (result: SimpleAck) => void) => void;
  'completion:resume': (payload: ResumePayload, ack: (result: SimpleAck) => void) => void;
  /** The clock-offset probe over the socket itself: the ack carries the server's receive and send times. */
  'clock:probe': (ack: (time: ServerTime) => void) => void;
}

export interface ServerToClientEvents {
  completion: (event: CompletionEvent) => void;
}

/** The data a `connect_error` carries when the handshake is refused. */
export interface ConnectErrorData {
  code: RefusalCode;
}
