import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { Principal } from './auth.types';

/** Where the guard and the handshake middleware leave the principal. */
export interface WithPrincipal {
  principal?: Principal;
}

export function principalOf(context: ExecutionContext): Principal {
  const holder =
    context.getType() === 'ws'
      ? (context.switchToWs().getClient<{ data: WithPrincipal }>().data as WithPrincipal)
      : context.switchToHttp().getRequest<WithPrincipal>();
  if (!holder.principal) {
    // A handler reached without authentication is a wiring bug, never a reason to act as someone.
    throw new Error('no principal: the auth guard or handshake middleware did not run');
  }
  return holder.principal;
}

/** The authenticated principal, in a controller or a gateway handler. */
export const CurrentPrincipal = createParamDecorator((_data: unknown, context: ExecutionContext) =>
  principalOf(context),
);
