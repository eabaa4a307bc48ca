import { Injectable } from '@nestjs/common';
import { AuthStrategyName } from '../auth.constants';
import type { AuthStrategy, Principal } from '../auth.types';

export const ANONYMOUS: Principal = { id: 'anonymous', strategy: 'none' };

/** Local use: everyone is the one anonymous principal. Refused in production unless explicitly allowed. */
@Injectable()
@AuthStrategyName('none')
export class NoneStrategy implements AuthStrategy {
  async authenticate(): Promise<Principal> {
    return ANONYMOUS;
  }
}
