import { ProblemException } from '@app/problem';
import { type CanActivate, type ExecutionContext, Injectable, SetMetadata } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { AuthService } from './auth.service';
import { AuthError } from './auth.types';
import { httpCredentials } from './credentials';
import type { WithPrincipal } from './current-principal.decorator';
import { ResumeTokenService } from './resume-token.service';
import { ANONYMOUS, anonymousFrom } from './strategies/none.strategy';

const RESUME_TOKEN_ALLOWED = Symbol('RESUME_TOKEN_ALLOWED');
/** Lets a route that takes a `:streamId` accept `?resumeToken=` (for EventSource) instead of credentials. */
export const AllowResumeToken = () => SetMetadata(RESUME_TOKEN_ALLOWED, true);

/** Authenticates every HTTP request of the controllers it guards; a refusal is problem+json 401/403. */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly auth: AuthService,
    private readonly resumeTokens: ResumeTokenService,
    private readonly reflector: Reflector,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<Request & WithPrincipal>();
    // Express parses the query string anew on every read of `request.query`: only for the routes that look at it.
    const resumeToken = this.reflector.get<boolean | undefined>(RESUME_TOKEN_ALLOWED, context.getHandler())
      ? request.query.resumeToken
      : undefined;
    if (typeof resumeToken === 'string') {
      const principal = this.resumeTokens.verify(resumeToken, String(request.params.streamId));
      if (!principal) {
        throw new ProblemException(
          'unauthorized',
          'The resume token is not valid for this stream, or has expired.',
        );
      }
      // A token of the anonymous owner counts against the limits of the address using it, as its start did.
      request.principal =
        principal.id === ANONYMOUS.id
          ? {
              ...principal,
              limitKey: anonymousFrom(this.auth.clientAddress(request), this.auth.anonymousIpv6PrefixLength)
                .limitKey,
            }
          : principal;
      return true;
    }
    try {
      request.principal = await this.auth.authenticate(
        httpCredentials(request, this.auth.clientAddress(request)),
      );
      return true;
    } catch (error) {
      const refusal =
        error instanceof AuthError ? error : new AuthError('unauthorized', 'Not authenticated.');
      throw new ProblemException(refusal.code, refusal.message);
    }
  }
}
