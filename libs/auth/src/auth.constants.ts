import { SetMetadata } from '@nestjs/common';

/** Injection token of the strategy class `AUTH_MODE` selected. */
export const AUTH_STRATEGY_TYPE = Symbol('AUTH_STRATEGY_TYPE');
export const AUTH_STRATEGY_NAME = Symbol('AUTH_STRATEGY_NAME');

/** Names a strategy class: `AUTH_MODE=<name>` selects it. */
export const AuthStrategyName = (name: string) => SetMetadata(AUTH_STRATEGY_NAME, name);
