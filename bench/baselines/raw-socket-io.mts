/** raw-socket.io: the same relay on bare socket.io; `start` → one `token` event per token, then `done`. */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { BACKLOG, listenLine, relayTokens } from './upstream.mts';

const upstream = process.env['UPSTREAM'] ?? '';
const http = createServer();
const io = new Server(http, { serveClient: false });

io.on('connection', (socket) => {
  socket.on('start', (request: { id: number; content: string }) => {
    const abort = new AbortController();
    socket.once('disconnect', () => abort.abort());
    relayTokens(upstream, request, (text) => socket.emit('token', request.id, text), abort.signal)
      .then(() => socket.emit('done', request.id))
      .catch(() => socket.emit('failed', request.id));
  });
});
http.listen(0, '127.0.0.1', BACKLOG, () => listenLine('raw-socket.io', (http.address() as AddressInfo).port));
