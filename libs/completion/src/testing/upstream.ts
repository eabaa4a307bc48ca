/** Test helpers: a real upstream HTTP(S) server on port 0. */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';

/**
 * Test-only certificates (100-year validity), made with openssl: `ca.pem` signs `localhost.pem` (DNS:localhost,
 * IP:127.0.0.1); `other-ca.pem` is an unrelated CA.
 */
const TLS = __dirname;
export const tlsFile = (name: string) => readFileSync(join(TLS, name));

export type Handler = (request: IncomingMessage, response: ServerResponse, body: string) => void;

/** A real HTTP(S) server on port 0 that records each connection and when it closed. */
export class Upstream {
  readonly sockets: Socket[] = [];
  readonly closed: Socket[] = [];
  private constructor(
    readonly server: Server,
    readonly url: string,
  ) {}

  static async start(handler: Handler, tls = false): Promise<Upstream> {
    const listener = (request: IncomingMessage, response: ServerResponse) => {
      let body = '';
      request.setEncoding('utf8');
      request.on('data', (piece: string) => (body += piece));
      request.on('end', () => handler(request, response, body));
    };
    const server: Server = tls
      ? createTlsServer({ key: tlsFile('localhost.key'), cert: tlsFile('localhost.pem') }, listener)
      : createServer(listener);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const upstream = new Upstream(server, `${tls ? 'https' : 'http'}://localhost:${port}`);
    server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => {
      upstream.sockets.push(socket);
      socket.on('close', () => upstream.closed.push(socket));
    });
    return upstream;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, 'close');
  }
}

/** A URL on which nothing listens: a port that was just free. */
export async function refusedUrl(): Promise<string> {
  const upstream = await Upstream.start(() => undefined);
  const { url } = upstream;
  await upstream.stop();
  return url;
}
