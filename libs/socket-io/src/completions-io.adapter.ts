import { HandshakeRefusal, type HostCheck, refuseForeignHostsOnEngine } from '@app/auth';
import { REQUEST_LIMITS, SOCKET_NAMESPACE, SOCKET_PATH } from '@app/contracts';
import type { INestApplicationContext } from '@nestjs/common';
import { IoAdapter } from '@nestjs/platform-socket.io';
import type { MessageMappingProperties } from '@nestjs/websockets';
import type { IncomingMessage } from 'node:http';
import type { Observable } from 'rxjs';
import type { Namespace, Server, ServerOptions, Socket } from 'socket.io';

type Reply = (response: unknown) => void;

export interface CompletionsIoOptions {
  /** `CORS_ORIGINS`: origins allowed besides the server's own. */
  corsOrigins: readonly string[];
  /** `SOCKET_MAX_CONNECTIONS_PER_ADDRESS`: Engine.IO connections one client address may hold open. */
  maxConnectionsPerAddress: number;
  /** The client's address for limits (the socket's peer, or what a trusted proxy says). */
  clientAddress: (request: IncomingMessage) => string;
  /** `ALLOWED_HOSTS`, checked on every Engine.IO request and upgrade as on HTTP. */
  hostCheck: HostCheck;
}

/**
 * Socket.IO settings for every namespace: the HTTP body limit as the packet limit, no client bundle
 * served, and the same origin policy as HTTP. Browsers send `Origin` with a WebSocket handshake but
 * do not enforce CORS on it, so the server checks it: same origin, or one of `CORS_ORIGINS`.
 *
 * Only `/completions` is served: the main namespace `/`, which Socket.IO creates and accepts by default,
 * refuses every connection (other names are refused by Socket.IO as unknown).
 *
 * Connections are counted per client address at the Engine.IO level, so that one that never joins a
 * namespace, or whose handshake was refused, counts while it is open. Joining `/completions` is refused
 * with `connect_error` `rate_limited` (the contract's handshake refusal, which a client can act on) once
 * the address holds more than `maxConnectionsPerAddress`; the official client then closes that
 * connection. Bare Engine.IO connections, which never ask to join, are refused at the handshake past
 * twice the cap: the cap itself must stay reachable for the namespace's refusal to be seen.
 */
export class CompletionsIoAdapter extends IoAdapter {
  private readonly connections = new Map<string, number>();

  constructor(
    app: INestApplicationContext,
    private readonly options: CompletionsIoOptions,
  ) {
    super(app);
  }

  override create(port: number, options?: ServerOptions & { namespace?: string; server?: Server }) {
    const created = super.create(port, options) as Server | Namespace;
    if (options?.namespace === SOCKET_NAMESPACE) {
      (created as Namespace).use((socket, next) => {
        const open = this.connections.get(this.options.clientAddress(socket.request)) ?? 0;
        next(
          open > this.options.maxConnectionsPerAddress
            ? new HandshakeRefusal('Too many connections from this address.', { code: 'rate_limited' })
            : undefined,
        );
      });
    }
    return created;
  }

  override createIOServer(port: number, options?: ServerOptions): Server {
    const server: Server = super.createIOServer(port, {
      ...options,
      path: options?.path ?? SOCKET_PATH,
      serveClient: false,
      maxHttpBufferSize: REQUEST_LIMITS.maxBodyBytes,
      cors: this.options.corsOrigins.length > 0 ? { origin: [...this.options.corsOrigins] } : undefined,
      allowRequest: (request, callback) => {
        const refusal = this.refusalOf(request);
        callback(refusal ?? null, refusal === undefined);
      },
    } as ServerOptions);
    server.engine.use(refuseForeignHostsOnEngine(this.options.hostCheck));
    server
      .of('/')
      .use((_socket, next) =>
        next(
          new HandshakeRefusal(`Only the ${SOCKET_NAMESPACE} namespace is served.`, { code: 'forbidden' }),
        ),
      );
    // The handshake that allowRequest admitted becomes this connection synchronously (no await between), so a
    // burst of handshakes from one address cannot all pass the check before any of them is counted.
    server.engine.on(
      'connection',
      (connection: { request: IncomingMessage; once: (event: 'close', listener: () => void) => void }) => {
        const address = this.options.clientAddress(connection.request);
        this.connections.set(address, (this.connections.get(address) ?? 0) + 1);
        connection.once('close', () => {
          const left = (this.connections.get(address) ?? 1) - 1;
          if (left > 0) {
            this.connections.set(address, left);
          } else {
            this.connections.delete(address);
          }
        });
      },
    );
    return server;
  }

  /**
   * Nest's IoAdapter binds every handler of every socket through an RxJS pipeline (`fromEvent`, `mergeMap`,
   * `defer`, `takeUntil` a shared disconnect stream): four subscriptions and their operators per connection, held
   * for its life (most of the 13 KB an idle socket cost over bare socket.io), and a chain of operator calls per
   * event. A plain listener per message does the same work: it calls the handler Nest built (guards, pipes,
   * interceptors and exception filters included, as before) and sends a handler's non-empty result as IoAdapter
   * does, as the event it names or through the ack. The gateway's handlers answer through the ack themselves and
   * return nothing, so RxJS runs only for a result. `takeUntil(disconnect)` is not needed: Socket.IO emits no
   * event on a socket after its `disconnect`.
   */
  override bindMessageHandlers(
    socket: Socket,
    handlers: MessageMappingProperties[],
    transform: (data: unknown) => Observable<unknown>,
  ): void {
    for (const { message, callback, isAckHandledManually } of handlers) {
      socket.on(message, (...args: unknown[]) => {
        // `fromEvent`, which IoAdapter used, hands on a lone argument as it is and several as an array.
        const { data, ack } = this.mapPayload(args.length === 1 ? args[0] : args);
        let result: unknown;
        try {
          result = callback(data, ack);
        } catch (error) {
          this.logger.error(error);
          return;
        }
        Promise.resolve(result).then(
          (value) => {
            if (value !== undefined && value !== null) {
              this.reply(socket, transform(value), isAckHandledManually ? undefined : (ack as Reply));
            }
          },
          (error: unknown) => this.logger.error(error),
        );
      });
    }
  }

  /** What IoAdapter does with a handler's result: `{ event, data }` is emitted, anything else is the ack's answer. */
  private reply(socket: Socket, responses: Observable<unknown>, ack: Reply | undefined): void {
    responses.subscribe({
      next: (response) => {
        if (response === undefined || response === null) {
          return;
        }
        const { event, data } = response as { event?: string; data?: unknown };
        if (event) {
          socket.emit(event, data);
        } else {
          ack?.(response);
        }
      },
      error: (error: unknown) => this.logger.error(error),
    });
  }

  /** Why a new Engine.IO handshake is refused, or undefined when it is not. */
  private refusalOf(request: IncomingMessage): string | undefined {
    if (!originAllowed(request, this.options.corsOrigins)) {
      return 'This origin is not allowed.';
    }
    const open = this.connections.get(this.options.clientAddress(request)) ?? 0;
    if (open >= 2 * this.options.maxConnectionsPerAddress) {
      return 'Too many connections from this address.';
    }
    return undefined;
  }
}

/** No Origin (a non-browser client) is allowed: CORS protects browsers' users, and tokens still apply. */
export function originAllowed(request: IncomingMessage, corsOrigins: readonly string[]): boolean {
  const origin = request.headers.origin;
  if (!origin) {
    return true;
  }
  if (corsOrigins.includes(origin)) {
    return true;
  }
  try {
    return new URL(origin).host === request.headers.host;
  } catch {
    return false;
  }
}
