import { Module } from '@nestjs/common';
import { AUTH_STRATEGY_TYPES } from './auth.constants';
import { AuthGuard } from './auth.guard';
import { AUTH_MODULE_OPTIONS, AuthModuleBase, type AUTH_OPTIONS_TYPE } from './auth.module-definition';
import { AuthService } from './auth.service';
import { ResumeTokenService } from './resume-token.service';
import { ApiKeyStrategy } from './strategies/api-key.strategy';
import { JwtStrategy } from './strategies/jwt.strategy';
import { NoneStrategy } from './strategies/none.strategy';

export const BUILT_IN_STRATEGIES = [NoneStrategy, ApiKeyStrategy, JwtStrategy];

/** Global: every transport module uses the same AuthService, guard and resume tokens. */
@Module({
  providers: [AuthService, AuthGuard, ResumeTokenService],
  exports: [AuthService, AuthGuard, ResumeTokenService, AUTH_MODULE_OPTIONS],
})
export class AuthModule extends AuthModuleBase {
  static override forRoot(options: typeof AUTH_OPTIONS_TYPE) {
    const definition = super.forRoot(options);
    return {
      ...definition,
      providers: [
        ...(definition.providers ?? []),
        { provide: AUTH_STRATEGY_TYPES, useValue: [...BUILT_IN_STRATEGIES, ...(options.strategies ?? [])] },
      ],
    };
  }
}
