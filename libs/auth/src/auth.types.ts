import type { RefusalCode } from '@app/contracts';

/** Who a request acts for. Streams belong to a principal `id`; nothing else of it reaches a client. */
export interface Principal {
  id: string;
  /** The strategy that vouched for it. */
  strategy: string;
  /** When the credentials stop being valid (epoch ms); a socket re-checks it on every event. */
  expiresAt?: number;
  claims?: Readonly<Record<string, unknown>>;
  /**
   * Whose limits its requests count against, when not `id`'s. Anonymous clients share one id (a stream is
   * owned by whoever holds its id) and are told apart here, by client address.
   */
  limitKey?: string;
  /**
   * The only models this principal may ask for, on every surface (within `ALLOWED_MODELS`, which binds everyone);
   * absent: any. The `jwt` strategy takes it from a `models` claim; a custom strategy sets it as it likes.
   */
  models?: readonly string[];
}

/** What a client presented, the same shape whatever the transport. */
export interface Credentials {
  transport: 'http' | 'socket.io';
  /** `Authorization: Bearer <x>` on HTTP, `auth.token` in a Socket.IO handshake. */
  bearer?: string;
  /** `X-API-Key` on HTTP. */
  apiKey?: string;
  /** Request or handshake headers, lower-cased, for strategies that trust a proxy's identity headers. */
  headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The client's address: the peer's, or what a proxy trusted by `TRUST_PROXY` says it is. */
  remoteAddress?: string;
}

/**
 * One way of turning credentials into a principal. Name the class with `@AuthStrategyName('x')`,
 * register it with `AuthModule.forRoot({ strategies: [...] })` and select it with `AUTH_MODE=x`.
 * Nest constructs only the selected one, so it may refuse to construct without its settings.
 * Refuse with `AuthError`; anything else thrown is treated as a refusal too, never as a 500.
 */
export interface AuthStrategy {
  authenticate(credentials: Credentials): Promise<Principal>;
}

/** A refusal: its message is shown to the client, so it says what is wrong, never what was expected. */
export class AuthError extends Error {
  constructor(
    readonly code: Extract<RefusalCode, 'unauthorized' | 'forbidden'>,
    message: string,
  ) {
    super(message);
    this.name = 'AuthError';
  }
}
