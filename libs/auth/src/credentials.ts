import type { Request } from 'express';
import type { Socket } from 'socket.io';
import type { Credentials } from './auth.types';

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** `remoteAddress`: the client's, as `AuthService.clientAddress` found it with the TRUST_PROXY rule. */
export function httpCredentials(request: Request, remoteAddress: string): Credentials {
  const authorization = request.headers.authorization;
  const apiKey = request.headers['x-api-key'];
  return {
    transport: 'http',
    bearer: authorization ? (BEARER.exec(authorization)?.[1] ?? '') : undefined,
    apiKey: typeof apiKey === 'string' ? apiKey : undefined,
    headers: request.headers,
    remoteAddress,
  };
}

/**
 * Socket.IO credentials travel in the handshake's `auth` object, never in the URL. `remoteAddress` is the
 * client's, as `AuthService.clientAddress` found it with the TRUST_PROXY rule.
 */
export function socketCredentials(socket: Pick<Socket, 'handshake'>, remoteAddress?: string): Credentials {
  const auth: unknown = socket.handshake.auth;
  const token = typeof auth === 'object' && auth !== null ? (auth as { token?: unknown }).token : undefined;
  return {
    transport: 'socket.io',
    bearer: typeof token === 'string' ? token : undefined,
    headers: socket.handshake.headers,
    remoteAddress,
  };
}
