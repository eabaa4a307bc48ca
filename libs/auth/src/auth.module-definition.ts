import { ConfigurableModuleBuilder, type Type } from '@nestjs/common';
import type { AuthStrategy } from './auth.types';

export interface AuthModuleOptions {
  /** The name of the strategy in force (`AUTH_MODE`). */
  mode: string;
  apiKeys: string[];
  jwt: {
    secret?: string;
    jwksUrl?: string;
    issuer?: string;
    audience?: string;
    clockToleranceSec: number;
    /** Least time between two JWKS fetches; an unknown `kid` refetches once it has passed. */
    jwksCooldownMs: number;
  };
  /** Signs resume tokens; random per process when unset (set it when several instances serve one stream). */
  resumeTokenSecret?: string;
  resumeTokenTtlMs: number;
}

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
