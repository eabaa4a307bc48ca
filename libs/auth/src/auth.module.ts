import { ConfigError } from '@app/config';
import { Module, type Type } from '@nestjs/common';
import { AUTH_STRATEGY_NAME, AUTH_STRATEGY_TYPE } from './auth.constants';
import { AuthGuard } from './auth.guard';
import { AUTH_MODULE_OPTIONS, AuthModuleBase, type AUTH_OPTIONS_TYPE } from './auth.module-definition';
import { AuthService } from './auth.service';
import { ModelPolicy } from './model-policy';
import type { AuthStrategy } from './auth.types';
import { ResumeTokenService } from './resume-token.service';
import { ServerKeys } from './server-keys.service';
import { ApiKeyStrategy } from './strategies/api-key.strategy';
import { JwtStrategy } from './strategies/jwt.strategy';
import { NoneStrategy } from './strategies/none.strategy';

export const BUILT_IN_STRATEGIES = [NoneStrategy, ApiKeyStrategy, JwtStrategy];

/** Global: every transport module uses the same AuthService, guard and resume tokens. */
@Module({
  providers: [AuthService, AuthGuard, ResumeTokenService, ServerKeys, ModelPolicy],
  exports: [AuthService, AuthGuard, ResumeTokenService, ServerKeys, ModelPolicy, AUTH_MODULE_OPTIONS],
})
export class AuthModule extends AuthModuleBase {
  static override forRoot(options: typeof AUTH_OPTIONS_TYPE) {
    const definition = super.forRoot(options);
    return {
      ...definition,
      providers: [
        ...(definition.providers ?? []),
        { provide: AUTH_STRATEGY_TYPE, useValue: selectStrategy(options.mode, options.strategies ?? []) },
      ],
    };
  }
}

/** Chosen while the module is composed, so an unknown AUTH_MODE stops the server before anything starts. */
function selectStrategy(mode: string, custom: Type<AuthStrategy>[]): Type<AuthStrategy> {
  const candidates = [...BUILT_IN_STRATEGIES, ...custom];
  const selected = candidates.find((type) => Reflect.getMetadata(AUTH_STRATEGY_NAME, type) === mode);
  if (!selected) {
    const known = candidates.map((type) => String(Reflect.getMetadata(AUTH_STRATEGY_NAME, type))).join(', ');
    throw new ConfigError('AUTH_MODE', `no strategy named "${mode}" (known: ${known})`);
  }
  return selected;
}
