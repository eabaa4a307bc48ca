/** raw-sse: a minimal node:http relay; POST /stream → one SSE event per token, then `event: done`. */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BACKLOG, listenLine, relayTokens } from './upstream.mts';

const upstream = process.env['UPSTREAM'] ?? '';

const server = createServer((request, response) => {
  let body = '';
  request.on('data', (chunk: Buffer) => (body += chunk.toString()));
  request.on('end', () => {
    const abort = new AbortController();
    response.on('close', () => abort.abort());
    response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    response.socket?.setNoDelay(true);
    relayTokens(
      upstream,
      JSON.parse(body),
      (text) => response.write(`data: ${JSON.stringify({ text })}\n\n`),
      abort.signal,
    )
      .then(() => response.end('event: done\ndata: {}\n\n'))
      .catch(() => response.destroy());
  });
});
server.listen(0, '127.0.0.1', BACKLOG, () => listenLine('raw-sse', (server.address() as AddressInfo).port));
