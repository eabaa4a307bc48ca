import { REQUEST_LIMITS, SOCKET_PATH } from '@app/contracts';
import type { INestApplicationContext } from '@nestjs/common';
import { IoAdapter } from '@nestjs/platform-socket.io';
import type { IncomingMessage } from 'node:http';
import type { Server, ServerOptions } from 'socket.io';

/**
 * Socket.IO settings for every namespace: the HTTP body limit as the packet limit, no client bundle
 * served, and the same origin policy as HTTP. Browsers send `Origin` with a WebSocket handshake but
 * do not enforce CORS on it, so the server checks it: same origin, or one of `CORS_ORIGINS`.
 */
export class CompletionsIoAdapter extends IoAdapter {
  constructor(
    app: INestApplicationContext,
    private readonly corsOrigins: readonly string[],
  ) {
    super(app);
  }

  override createIOServer(port: number, options?: ServerOptions): Server {
    return super.createIOServer(port, {
      ...options,
      path: options?.path ?? SOCKET_PATH,
      serveClient: false,
      maxHttpBufferSize: REQUEST_LIMITS.maxBodyBytes,
      cors: this.corsOrigins.length > 0 ? { origin: [...this.corsOrigins] } : undefined,
      allowRequest: (request, callback) => callback(null, originAllowed(request, this.corsOrigins)),
    } as ServerOptions);
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
