import { Injectable, effect, inject, signal } from '@angular/core';
import {
  type CompletionEvent,
  type CompletionRequest,
  type ConnectErrorData,
  type ClientToServerEvents,
  isTerminalEvent,
  type ServerToClientEvents,
  SOCKET_NAMESPACE,
  SOCKET_PATH,
} from '@app/contracts';
import { Observable } from 'rxjs';
import { io, type Socket } from 'socket.io-client';
import type { ClockSample } from '../clock/clock-offset';
import { epochNow } from '../clock/epoch-now';
import { Credentials } from '../settings/credentials';
import { Settings } from '../settings/settings';
import type { CompletionTransport, ResumeTarget, StreamHooks } from './completion-transport';
import { TransportError } from './transport-error';
import { traceparentOf } from '../run/trace-context';

export type CompletionSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

const ACK_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Completions over one shared Socket.IO connection (WebSocket only, no long-polling), which carries many
 * streams at once: each stream listens for the `completion` events with its own streamId. After a reconnect,
 * unfinished streams are resumed from their last seq; after a page reload, `resume` picks a stream up again.
 */
@Injectable({ providedIn: 'root' })
export class SocketIoTransport implements CompletionTransport {
  readonly name = 'socket.io';
  private readonly credentials = inject(Credentials);
  private socket: CompletionSocket | null = null;
  private readonly engine = signal<string | null>(null);

  /** The engine.io transport in use (`websocket`), or null while disconnected. */
  readonly engineTransport = this.engine.asReadonly();

  constructor() {
    // New credentials need a new handshake: drop the socket; the next stream opens one with the new token.
    effect(() => {
      this.credentials.token();
      this.disconnect();
    });
    // Connected ahead, as soon as runs will use Socket.IO (its mode, or a race), as a real app connects at page
    // load: a run's time to first token then measures the stream, not the WebSocket handshake, just as SSE runs
    // reuse the page's kept-alive HTTP connection. A refusal here is left for the run to report.
    const mode = inject(Settings).mode;
    effect(() => {
      this.credentials.token();
      if (mode() !== 'sse') this.connected().catch(() => undefined);
    });
  }

  /**
   * The socket is shared by every stream of the page: a stream that found it connected reused it; one that
   * waited for its handshake shows that wait as its connection time.
   */
  stream(
    request: CompletionRequest & { streamId: string },
    hooks?: StreamHooks,
  ): Observable<CompletionEvent> {
    return socketCompletionStream(request, async () => {
      const reused = this.socket?.connected === true;
      const asked = epochNow();
      const socket = await this.connected();
      hooks?.connection?.({
        protocol: socket.io.engine.transport.name,
        newConnection: !reused,
        queuedMs: 0,
        connectMs: reused ? 0 : epochNow() - asked,
      });
      return socket;
    });
  }

  resume(target: ResumeTarget): Observable<CompletionEvent> {
    return socketResumedStream(target, () => this.connected());
  }

  async cancel(streamId: string): Promise<void> {
    const socket = await this.connected();
    const ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck('completion:cancel', { streamId });
    // not_found: the stream already ended; there is nothing left to cancel.
    if (!ack.ok && ack.error.code !== 'not_found')
      throw new TransportError(ack.error.code, ack.error.message, false);
  }

  /**
   * A clock probe over the connection itself (its round trip is the one Socket.IO tokens take), or null while
   * it is not connected: a probe never opens the socket.
   */
  probeClock(timeoutMs: number): Promise<ClockSample | null> {
    const socket = this.socket;
    if (!socket?.connected) return Promise.resolve(null);
    return new Promise((resolve) => {
      const clientSentAt = epochNow();
      socket.timeout(timeoutMs).emit('clock:probe', (error, time) => {
        const clientReceivedAt = epochNow();
        resolve(
          error
            ? null
            : {
                clientSentAt,
                serverReceivedAt: time.receivedAt,
                serverSentAt: time.sentAt,
                clientReceivedAt,
              },
        );
      });
    });
  }

  private connected(): Promise<CompletionSocket> {
    const socket = (this.socket ??= this.open());
    return whenConnected(socket, CONNECT_TIMEOUT_MS).catch((error: unknown) => {
      // Refused: the next attempt opens a new socket (with the credentials of then).
      if (this.socket === socket && !socket.active) this.socket = null;
      throw error;
    });
  }

  private open(): CompletionSocket {
    const token = this.credentials.token();
    const socket: CompletionSocket = io(SOCKET_NAMESPACE, {
      path: SOCKET_PATH,
      transports: ['websocket'],
      autoConnect: false,
      auth: token ? { token } : {},
    });
    socket.on('connect', () => {
      this.engine.set(socket.io.engine.transport.name);
      socket.io.engine.once('upgrade', () => this.engine.set(socket.io.engine.transport.name));
    });
    socket.on('disconnect', () => this.engine.set(null));
    return socket;
  }

  private disconnect(): void {
    this.socket?.disconnect();
    this.socket = null;
    this.engine.set(null);
  }
}

/**
 * The socket once connected. Every caller waits for the same connection: `connect()` is called only on a socket
 * that is not already connecting, since a second call while the first handshake is under way sends the namespace
 * a second CONNECT on the same connection, which the server answers by closing it.
 */
export function whenConnected(socket: CompletionSocket, timeoutMs: number): Promise<CompletionSocket> {
  if (socket.connected) return Promise.resolve(socket);
  return new Promise((resolve, reject) => {
    const settle = () => {
      clearTimeout(timer);
      socket.off('connect', onConnect);
      socket.off('connect_error', onError);
    };
    const onConnect = () => {
      settle();
      resolve(socket);
    };
    const onError = (error: Error & { data?: Partial<ConnectErrorData> }) => {
      // Without a refusal the manager keeps retrying (socket.active stays true) until the timer gives up.
      if (socket.active) return;
      settle();
      const code = error.data?.code;
      reject(
        code
          ? new TransportError(code, refusalMessage(code), code === 'rate_limited')
          : TransportError.network(error),
      );
    };
    const timer = setTimeout(() => {
      settle();
      reject(new TransportError('network', 'Could not connect the WebSocket to the server.', true));
    }, timeoutMs);
    socket.on('connect', onConnect);
    socket.on('connect_error', onError);
    if (!socket.active) socket.connect();
  });
}

export function socketCompletionStream(
  request: CompletionRequest & { streamId: string },
  connect: () => Promise<CompletionSocket>,
): Observable<CompletionEvent> {
  return followSocketStream({ streamId: request.streamId, lastSeq: -1 }, connect, async (socket) => {
    // Trace context in the payload, not the handshake: one socket carries many runs, each its own trace.
    const ack = await socket
      .timeout(ACK_TIMEOUT_MS)
      .emitWithAck('completion:start', { ...request, ...traceparentOf(request.streamId) });
    if (ack.ok) return null;
    const { code, message, retryAfterMs } = ack.error;
    return new TransportError(code, message, code === 'rate_limited', retryAfterMs);
  });
}

/** A stream started earlier (before a page reload): `completion:resume` once connected, then the same listening. */
export function socketResumedStream(
  target: ResumeTarget,
  connect: () => Promise<CompletionSocket>,
): Observable<CompletionEvent> {
  return followSocketStream(target, connect, (socket) =>
    askToResume(socket, target.streamId, target.lastSeq),
  );
}

/**
 * The one listening loop of both paths: `begin` asks for the stream (start or resume) once the socket is
 * connected and the listeners are in place, and answers the refusal if there is one. After a reconnect the
 * stream is resumed from the last seq received.
 */
function followSocketStream(
  from: ResumeTarget,
  connect: () => Promise<CompletionSocket>,
  begin: (socket: CompletionSocket) => Promise<TransportError | null>,
): Observable<CompletionEvent> {
  const { streamId } = from;
  return new Observable<CompletionEvent>((subscriber) => {
    let socket: CompletionSocket | null = null;
    let lastSeq = from.lastSeq;
    let closed = false;
    let interrupted = false;

    const onEvent = (event: CompletionEvent) => {
      if (event.streamId !== streamId || event.seq <= lastSeq) return;
      lastSeq = event.seq;
      subscriber.next(event);
      if (isTerminalEvent(event)) subscriber.complete();
    };
    const onReconnect = () => {
      if (!interrupted || !socket) return;
      interrupted = false;
      askToResume(socket, streamId, lastSeq)
        .then((refusal) => {
          if (refusal) subscriber.error(refusal);
        })
        .catch(() =>
          subscriber.error(new TransportError('network', 'The stream could not be resumed.', true)),
        );
    };
    const onDisconnect = (reason: string) => {
      interrupted = true;
      // The client closing on purpose (new credentials) will not come back; anything else reconnects.
      if (reason === 'io client disconnect') {
        subscriber.error(new TransportError('network', 'The connection was closed.', true));
      }
    };

    connect()
      .then(async (connected) => {
        if (closed) return;
        socket = connected;
        socket.on('completion', onEvent);
        socket.on('disconnect', onDisconnect);
        socket.on('connect', onReconnect);
        const refusal = await begin(socket);
        if (refusal) subscriber.error(refusal);
      })
      .catch((error: unknown) =>
        subscriber.error(error instanceof TransportError ? error : TransportError.network(error)),
      );

    return () => {
      closed = true;
      socket?.off('completion', onEvent);
      socket?.off('disconnect', onDisconnect);
      socket?.off('connect', onReconnect);
    };
  });
}

/** `completion:resume`; the replay then comes as ordinary `completion` events. Null when accepted. */
async function askToResume(
  socket: CompletionSocket,
  streamId: string,
  lastSeq: number,
): Promise<TransportError | null> {
  const ack = await socket
    .timeout(ACK_TIMEOUT_MS)
    .emitWithAck('completion:resume', { streamId, lastSeq, ...traceparentOf(streamId) });
  return ack.ok ? null : new TransportError(ack.error.code, ack.error.message, true);
}

function refusalMessage(code: string): string {
  switch (code) {
    case 'unauthorized':
      return 'The server needs credentials: enter an API key or token in Settings.';
    case 'forbidden':
      return 'These credentials are not allowed to stream completions.';
    case 'rate_limited':
      return 'Too many connections: wait a moment and retry.';
    default:
      return `The server refused the connection (${code}).`;
  }
}
