import { Inject, Injectable } from '@nestjs/common';
import { AuthStrategyName } from '../auth.constants';
import { AUTH_MODULE_OPTIONS, type AuthModuleOptions } from '../auth.module-definition';
import type { AuthStrategy, Credentials, Principal } from '../auth.types';
import { addressGroup } from '../client-address';

export const ANONYMOUS: Principal = { id: 'anonymous', strategy: 'none' };

/**
 * The anonymous principal as seen from `address`: one owner for all (a stream is whoever holds its id's),
 * but limits per client address (per IPv6 network of `ipv6PrefixLength` bits, see `addressGroup`), so that one
 * client's streams do not refuse everyone else's.
 */
export function anonymousFrom(address: string | undefined, ipv6PrefixLength: number): Principal {
  return {
    ...ANONYMOUS,
    limitKey: `anonymous@${address === undefined ? 'unknown' : addressGroup(address, ipv6PrefixLength)}`,
  };
}

/** Local use: everyone is the one anonymous principal. Refused in production unless explicitly allowed. */
@Injectable()
@AuthStrategyName('none')
export class NoneStrategy implements AuthStrategy {
  constructor(@Inject(AUTH_MODULE_OPTIONS) private readonly options: AuthModuleOptions) {}

  async authenticate(credentials: Credentials): Promise<Principal> {
    return anonymousFrom(credentials.remoteAddress, this.options.anonymousIpv6PrefixLength);
  }
}
