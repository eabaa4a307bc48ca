import { Injectable } from '@nestjs/common';
import { AuthStrategyName } from '../auth.constants';
import type { AuthStrategy, Credentials, Principal } from '../auth.types';

export const ANONYMOUS: Principal = { id: 'anonymous', strategy: 'none' };

/**
 * The anonymous principal as seen from `address`: one owner for all (a stream is whoever holds its id's),
 * but limits per client address, so that one client's streams do not refuse everyone else's.
 */
export function anonymousFrom(address: string | undefined): Principal {
  return { ...ANONYMOUS, limitKey: `anonymous@${address ?? 'unknown'}` };
}

/** Local use: everyone is the one anonymous principal. Refused in production unless explicitly allowed. */
@Injectable()
@AuthStrategyName('none')
export class NoneStrategy implements AuthStrategy {
  async authenticate(credentials: Credentials): Promise<Principal> {
    return anonymousFrom(credentials.remoteAddress);
  }
}
