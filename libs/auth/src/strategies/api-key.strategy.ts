import { Inject, Injectable } from '@nestjs/common';
import { AuthStrategyName } from '../auth.constants';
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { AUTH_MODULE_OPTIONS, type AuthModuleOptions } from '../auth.module-definition';
import { AuthError, type AuthStrategy, type Credentials, type Principal } from '../auth.types';
import { ServerKeys } from '../server-keys.service';

const HASHED = /^sha256:([0-9a-f]{64})$/i;

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/**
 * Static API keys, from `AUTH_API_KEYS` in clear or as `sha256:<hex>`. Every key is compared as a
 * SHA-256 digest with `timingSafeEqual`, against every configured key, so neither the comparison nor
 * the loop tells how close a guess was. The principal is named by an HMAC of the key's digest under a
 * server secret, never by the key nor by its bare digest (unsalted, so a weak key could be guessed offline
 * from anything that shows the name: a resume token in a proxy log, a limits key in a shared store).
 */
@Injectable()
@AuthStrategyName('api-key')
export class ApiKeyStrategy implements AuthStrategy {
  private readonly digests: Buffer[];
  private readonly names: string[];

  constructor(@Inject(AUTH_MODULE_OPTIONS) options: AuthModuleOptions, keys: ServerKeys) {
    if (options.apiKeys.length === 0) {
      throw new Error('AUTH_MODE=api-key needs AUTH_API_KEYS');
    }
    this.digests = options.apiKeys.map((key) => {
      const hashed = HASHED.exec(key);
      return hashed ? Buffer.from(hashed[1], 'hex') : sha256(key);
    });
    const naming = keys.keyFor('principal-name');
    this.names = this.digests.map(
      (digest) => `key:${createHmac('sha256', naming).update(digest).digest('hex').slice(0, 32)}`,
    );
  }

  async authenticate(credentials: Credentials): Promise<Principal> {
    const key = credentials.bearer ?? credentials.apiKey;
    if (!key) {
      throw new AuthError(
        'unauthorized',
        credentials.transport === 'socket.io'
          ? 'An API key is required in the handshake: io(url, { auth: { token: key } }).'
          : 'An API key is required (Authorization: Bearer <key> or X-API-Key).',
      );
    }
    const presented = sha256(key);
    let match: string | undefined;
    this.digests.forEach((digest, index) => {
      if (timingSafeEqual(presented, digest)) {
        match = this.names[index];
      }
    });
    if (!match) {
      throw new AuthError('unauthorized', 'The API key is not valid.');
    }
    return { id: match, strategy: 'api-key' };
  }
}
