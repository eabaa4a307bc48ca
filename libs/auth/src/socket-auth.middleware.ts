import type { ConnectErrorData } from '@app/contracts';
import type { Socket } from 'socket.io';
import type { AuthService } from './auth.service';
import { AuthError } from './auth.types';
import { socketCredentials } from './credentials';
import type { WithPrincipal } from './current-principal.decorator';

/** An Error whose `data` socket.io sends to the client with `connect_error`. */
export class HandshakeRefusal extends Error {
  constructor(
    message: string,
    readonly data: ConnectErrorData,
  ) {
    super(message);
  }
}

/**
 * Namespace middleware: Nest guards do not run on a gateway's connection, so the handshake is
 * authenticated here, by the same AuthService as HTTP. A refusal reaches the client as
 * `connect_error` with `data.code`.
 */
export function authenticateHandshake(auth: AuthService) {
  return (socket: Socket & { data: WithPrincipal }, next: (error?: Error) => void): void => {
    auth.authenticate(socketCredentials(socket, auth.clientAddress(socket.request))).then(
      (principal) => {
        socket.data.principal = principal;
        next();
      },
      (error: unknown) => {
        const refusal =
          error instanceof AuthError ? error : new AuthError('unauthorized', 'Not authenticated.');
        next(new HandshakeRefusal(refusal.message, { code: refusal.code }));
      },
    );
  };
}

/** Credentials can expire while a socket stays open; every event re-checks. */
export function principalStillValid(socket: { data: WithPrincipal }, now = Date.now()): boolean {
  const principal = socket.data.principal;
  return principal !== undefined && (principal.expiresAt === undefined || principal.expiresAt > now);
}
