import { Inject, Injectable } from '@nestjs/common';
import { createHmac, type KeyObject, timingSafeEqual } from 'node:crypto';
import { AUTH_MODULE_OPTIONS, type AuthModuleOptions } from './auth.module-definition';
import type { Principal } from './auth.types';
import { ServerKeys } from './server-keys.service';

/**
 * A browser's native EventSource cannot send headers, so resuming with it needs something in the
 * URL. Instead of the long-lived credentials, it carries this: an HMAC over one stream id, its owner
 * and an expiry, good for nothing else and for minutes only. The owner is a principal id, which never
 * holds anything derived from a credential alone (API-key principals are named by an HMAC under the
 * server's secret), so a token in a proxy log allows no offline guessing of a key.
 */
@Injectable()
export class ResumeTokenService {
  /** Imported once: every stream start signs a token, and importing a raw key per call showed in profiles. */
  private readonly key: KeyObject;

  constructor(
    @Inject(AUTH_MODULE_OPTIONS) private readonly options: AuthModuleOptions,
    keys: ServerKeys,
  ) {
    this.key = keys.keyFor('resume-token');
  }

  issue(streamId: string, principal: Principal, now = Date.now()): string {
    const expiresAt = now + this.options.resumeTokenTtlMs;
    const payload = Buffer.from(JSON.stringify([streamId, principal.id, expiresAt]), 'utf8').toString(
      'base64url',
    );
    return `${payload}.${this.sign(payload)}`;
  }

  /** The owner the token vouches for, when it is genuine, unexpired and for this stream. */
  verify(token: string, streamId: string, now = Date.now()): Principal | undefined {
    const [payload, signature, extra] = token.split('.');
    if (!payload || !signature || extra !== undefined || token.length > 1024) {
      return undefined;
    }
    const expected = Buffer.from(this.sign(payload), 'base64url');
    const presented = Buffer.from(signature, 'base64url');
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
      return undefined;
    }
    const [tokenStreamId, owner, expiresAt] = JSON.parse(
      Buffer.from(payload, 'base64url').toString('utf8'),
    ) as [string, string, number];
    if (tokenStreamId !== streamId || expiresAt < now) {
      return undefined;
    }
    return { id: owner, strategy: 'resume-token', expiresAt };
  }

  private sign(payload: string): string {
    return createHmac('sha256', this.key).update(payload).digest('base64url');
  }
}
