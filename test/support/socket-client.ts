import type {
  ClientToServerEvents,
  CompletionEvent,
  CompletionRequest,
  ServerToClientEvents,
  StartAck,
} from '@app/contracts';
import { io, type Socket } from 'socket.io-client';

export type CompletionClient = Socket<ServerToClientEvents, ClientToServerEvents>;

/** A socket on `/completions`, connected (with `token` in the handshake's `auth` when given). */
export async function connect(baseUrl: string, token?: string): Promise<CompletionClient> {
  const socket: CompletionClient = io(`${baseUrl}/completions`, {
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    ...(token === undefined ? {} : { auth: { token } }),
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  return socket;
}

/** Starts a stream and collects its events until the terminal one. */
export async function streamOver(
  socket: CompletionClient,
  request: CompletionRequest,
  onEvent?: (event: CompletionEvent, streamId: string) => void,
): Promise<{ ack: StartAck; events: CompletionEvent[] }> {
  const events: CompletionEvent[] = [];
  let streamId: string | undefined;
  const early: CompletionEvent[] = [];
  return new Promise((resolve, reject) => {
    const listener = (event: CompletionEvent) => {
      if (streamId === undefined) {
        early.push(event);
        return;
      }
      if (event.streamId !== streamId) {
        return;
      }
      events.push(event);
      onEvent?.(event, streamId);
      if (event.type === 'done' || event.type === 'error') {
        socket.off('completion', listener);
        resolve({ ack: { ok: true, streamId }, events });
      }
    };
    socket.on('completion', listener);
    socket.emit('completion:start', request, (ack) => {
      if (!ack.ok) {
        socket.off('completion', listener);
        resolve({ ack, events });
        return;
      }
      streamId = ack.streamId;
      if (early.some((event) => event.streamId === ack.streamId)) {
        reject(new Error('an event of the stream arrived before its ack'));
      }
    });
  });
}
