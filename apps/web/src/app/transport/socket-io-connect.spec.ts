import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { io } from 'socket.io-client';
import { type CompletionSocket, whenConnected } from './socket-io-transport';

/**
 * A real socket.io server whose namespace answers the handshake only when the test says so: the window in which
 * a run and the page's early connect both wait for the same socket.
 */
describe('whenConnected', () => {
  let http: HttpServer;
  let server: Server;
  let url: string;
  let admit: () => void;
  const handshakes: string[] = [];

  beforeAll(async () => {
    http = createServer();
    server = new Server(http, { transports: ['websocket'] });
    server.of('/completions').use((socket, next) => {
      handshakes.push(socket.id);
      admit = () => next();
    });
    server.of('/completions').on('connection', (socket) => {
      socket.on('completion:cancel', (_payload: unknown, ack: (answer: unknown) => void) =>
        ack({ ok: true }),
      );
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/completions`;
  });
  afterAll(async () => {
    await server.close();
  });

  it('sends one handshake for callers that wait on the same socket, and stays connected', async () => {
    const socket: CompletionSocket = io(url, { transports: ['websocket'], autoConnect: false });
    const disconnects: string[] = [];
    socket.on('disconnect', (reason) => disconnects.push(reason));
    try {
      const early = whenConnected(socket, 5000);
      // The page's early connect is still waiting for the server when a run asks for the socket.
      await waitFor(() => handshakes.length === 1);
      const run = whenConnected(socket, 5000);
      admit();
      await expect(Promise.all([early, run])).resolves.toEqual([socket, socket]);
      // A round trip after the handshake: a second CONNECT, sent before it, would have reached the server first.
      await socket.timeout(5000).emitWithAck('completion:cancel', { streamId: 'x' });
      expect({ handshakes: handshakes.length, connected: socket.connected, disconnects }).toEqual({
        handshakes: 1,
        connected: true,
        disconnects: [],
      });
    } finally {
      socket.disconnect();
    }
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the handshake');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
