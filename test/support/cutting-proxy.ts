import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/** How many bytes from the server a new connection may carry before it is cut; undefined: never cut. */
export type CutPolicy = () => number | undefined;

interface Link {
  client: Socket;
  upstream: Socket;
  forwarded: number;
  budget: number | undefined;
  cut: boolean;
}

/**
 * A TCP proxy on loopback that breaks connections the way a network does: after a chosen number of
 * bytes from the server (anywhere, mid-event or mid-frame included) both sides are destroyed. What the
 * client sends is never cut, so a request always reaches the server whole.
 */
export class CuttingProxy {
  /** Connections cut so far. */
  cuts = 0;
  connections = 0;
  policy: CutPolicy = () => undefined;
  private readonly links = new Set<Link>();
  private server: Server | undefined;

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<string> {
    this.server = createServer((client) => this.open(client));
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Cuts every open connection once `bytes` more have come from the server. */
  cutOpenAfter(bytes: number): void {
    for (const link of this.links) {
      link.budget = link.forwarded + bytes;
    }
  }

  close(): Promise<void> {
    for (const link of this.links) {
      link.client.destroy();
      link.upstream.destroy();
    }
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private open(client: Socket): void {
    this.connections += 1;
    const upstream = connect(this.target.port, this.target.host);
    const link: Link = { client, upstream, forwarded: 0, budget: this.policy(), cut: false };
    this.links.add(link);
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => this.forward(link, chunk));
    const close = () => {
      this.links.delete(link);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', close);
    upstream.on('close', close);
    client.on('error', close);
    upstream.on('error', close);
  }

  private forward(link: Link, chunk: Buffer): void {
    if (link.cut) {
      return;
    }
    const room = link.budget === undefined ? chunk.length : link.budget - link.forwarded;
    if (room >= chunk.length) {
      link.forwarded += chunk.length;
      link.client.write(chunk);
      return;
    }
    this.cuts += 1;
    link.cut = true;
    link.client.end(chunk.subarray(0, Math.max(0, room)), () => link.client.destroy());
    link.upstream.destroy();
  }
}
