import type { CompletionEvent, CompletionRequest } from '@app/contracts';
import type { Observable } from 'rxjs';
import type { ConnectionInfo } from './connection-info';

export const TRANSPORT_NAMES = ['sse', 'socket.io'] as const;
export type TransportName = (typeof TRANSPORT_NAMES)[number];

/** What a transport may learn while it streams that a later resume (after a page reload) needs. */
export interface StreamHooks {
  /** SSE: the start response's `X-Resume-Token`, a credential good for resuming this one stream only. */
  resumeToken?: (token: string) => void;
  /** The connection that carried the stream; SSE can tell only once the response has ended. */
  connection?: (info: ConnectionInfo) => void;
}

/** A stream this client started earlier, to pick up again: the events after `lastSeq` (`-1`: all of them). */
export interface ResumeTarget {
  streamId: string;
  lastSeq: number;
  resumeToken?: string | null;
}

/**
 * The seam between the UI and the wire. `stream` emits the stream's events and completes after its terminal
 * event (`done` or `error`); it errors with a `TransportError` only when the request was refused or the
 * connection was lost. `resume` does the same for a stream started earlier (before a page reload): it replays
 * the events after `lastSeq`, then follows the stream live; a stream the server no longer has errors with code
 * `not_found`. Unsubscribing stops listening (it aborts the fetch, or leaves the socket stream); only `cancel`
 * asks the server to abort the upstream request.
 */
export interface CompletionTransport {
  readonly name: TransportName;
  stream(request: CompletionRequest & { streamId: string }, hooks?: StreamHooks): Observable<CompletionEvent>;
  resume(target: ResumeTarget): Observable<CompletionEvent>;
  cancel(streamId: string): Promise<void>;
}
