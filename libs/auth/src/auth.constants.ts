import { SetMetadata } from '@nestjs/common';

/** Injection token of the strategy classes `AUTH_MODE` chooses from. */
export const AUTH_STRATEGY_TYPES = Symbol('AUTH_STRATEGY_TYPES');
export const AUTH_STRATEGY_NAME = Symbol('AUTH_STRATEGY_NAME');

/** Names a strategy class: `AUTH_MODE=<name>` selects it. */
export const AuthStrategyName = (name: string) => SetMetadata(AUTH_STRATEGY_NAME, name);
