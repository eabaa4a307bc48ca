import { ConfigurableModuleBuilder, type Type } from '@nestjs/common';
import type { AppConfig } from '@app/config';
import type { AuthStrategy } from './auth.types';
import type { TrustProxy } from './client-address';

/**
 * The validated `AUTH_*` settings (their meaning: docs/configuration.md), plus how long a resume token lives,
 * which the application derives from the stream timings.
 */
export type AuthModuleOptions = AppConfig['auth'] & {
  resumeTokenTtlMs: number;
  /** `TRUST_PROXY`, compiled: whose `X-Forwarded-For` tells the client's address. */
  trustProxy: TrustProxy;
};

export interface AuthModuleExtras {
  /** Custom strategies, besides the built-in `none`, `api-key` and `jwt`. */
  strategies?: Type<AuthStrategy>[];
}

export const {
  ConfigurableModuleClass: AuthModuleBase,
  MODULE_OPTIONS_TOKEN: AUTH_MODULE_OPTIONS,
  OPTIONS_TYPE: AUTH_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<AuthModuleOptions>()
  .setClassMethodName('forRoot')
  .setExtras<AuthModuleExtras>({ strategies: [] }, (definition) => ({ ...definition, global: true }))
  .build();
