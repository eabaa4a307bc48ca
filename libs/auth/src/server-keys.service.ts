import { Inject, Injectable } from '@nestjs/common';
import { createHmac, createSecretKey, type KeyObject, randomBytes } from 'node:crypto';
import { AUTH_MODULE_OPTIONS, type AuthModuleOptions } from './auth.module-definition';

/**
 * Keys derived from the server's one secret (`AUTH_RESUME_SECRET`; random per process when unset), one per
 * purpose, so that a value made with one (a resume token's signature) says nothing about another (a
 * principal's name). Instances given the same secret derive the same keys: their tokens and principal names
 * agree.
 */
@Injectable()
export class ServerKeys {
  private readonly root: Buffer;
  private readonly derived = new Map<string, KeyObject>();

  constructor(@Inject(AUTH_MODULE_OPTIONS) options: AuthModuleOptions) {
    this.root = options.resumeTokenSecret ? Buffer.from(options.resumeTokenSecret, 'utf8') : randomBytes(32);
  }

  /** The key for `purpose`; imported once, since some are used on every stream start. */
  keyFor(purpose: 'resume-token' | 'principal-name' | 'upstream-user'): KeyObject {
    let key = this.derived.get(purpose);
    if (!key) {
      key = createSecretKey(createHmac('sha256', this.root).update(`llm-stream-gateway:${purpose}`).digest());
      this.derived.set(purpose, key);
    }
    return key;
  }
}
