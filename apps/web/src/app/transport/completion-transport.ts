import type { CompletionEvent, CompletionRequest } from '@app/contracts';
import type { Observable } from 'rxjs';

export const TRANSPORT_NAMES = ['sse', 'socket.io'] as const;
export type TransportName = (typeof TRANSPORT_NAMES)[number];

/**
 * The seam between the UI and the wire. `stream` emits the stream's events and completes after its terminal
 * event (`done` or `error`); it errors with a `TransportError` only when the request was refused or the
 * connection was lost. Unsubscribing stops listening (it aborts the fetch, or leaves the socket stream); only
 * `cancel` asks the server to abort the upstream request.
 */
export interface CompletionTransport {
  readonly name: TransportName;
  stream(request: CompletionRequest & { streamId: string }): Observable<CompletionEvent>;
  cancel(streamId: string): Promise<void>;
}
