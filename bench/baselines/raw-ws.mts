/** raw-ws: the same relay on bare `ws`, one connection per stream: the floor for any WebSocket transport. */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { BACKLOG, listenLine, relayTokens } from './upstream.mts';

const upstream = process.env['UPSTREAM'] ?? '';
const http = createServer();
const wss = new WebSocketServer({ server: http, perMessageDeflate: false });

wss.on('connection', (socket) => {
  socket.once('message', (data) => {
    const abort = new AbortController();
    socket.once('close', () => abort.abort());
    relayTokens(upstream, JSON.parse(String(data)), (text) => socket.send(text), abort.signal)
      .then(() => socket.close(1000))
      .catch(() => socket.close(1011));
  });
});
http.listen(0, '127.0.0.1', BACKLOG, () => listenLine('raw-ws', (http.address() as AddressInfo).port));
