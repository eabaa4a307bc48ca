import { AuthError, type AuthStrategy, AuthStrategyName, type Credentials, type Principal } from '@app/auth';
import { Injectable } from '@nestjs/common';
import { createHash, timingSafeEqual } from 'node:crypto';

const USER_HEADER = 'x-forwarded-user';
const SECRET_HEADER = 'x-proxy-secret';
const USER_PATTERN = /^[A-Za-z0-9._@-]{1,128}$/;

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/**
 * A worked example of a custom auth strategy (docs/auth.md): trust the identity an authenticating
 * reverse proxy (oauth2-proxy, an identity-aware load balancer) puts in `X-Forwarded-User`, but only
 * on requests that also carry the secret that proxy shares with us, so a client that reaches the
 * gateway directly cannot claim to be anyone.
 *
 * Select it with `AUTH_MODE=trusted-proxy` and `TRUSTED_PROXY_SECRET=<shared secret>`, and register it
 * with `createApp(config, { authStrategies: [TrustedProxyStrategy] })`.
 */
@Injectable()
@AuthStrategyName('trusted-proxy')
export class TrustedProxyStrategy implements AuthStrategy {
  private readonly secret: Buffer;

  constructor() {
    const secret = process.env.TRUSTED_PROXY_SECRET;
    if (!secret || secret.length < 16) {
      // Constructed only when selected, so this stops the server at start, never mid-request.
      throw new Error('AUTH_MODE=trusted-proxy needs TRUSTED_PROXY_SECRET (16 characters or more)');
    }
    this.secret = digest(secret);
  }

  async authenticate(credentials: Credentials): Promise<Principal> {
    const secret = credentials.headers[SECRET_HEADER];
    if (typeof secret !== 'string' || !timingSafeEqual(digest(secret), this.secret)) {
      throw new AuthError('unauthorized', 'Requests must come through the authenticating proxy.');
    }
    const user = credentials.headers[USER_HEADER];
    if (typeof user !== 'string' || !USER_PATTERN.test(user)) {
      throw new AuthError('unauthorized', 'The proxy did not name a user.');
    }
    return { id: `proxy:${user}`, strategy: 'trusted-proxy' };
  }
}
