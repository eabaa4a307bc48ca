import { ConfigError } from '@app/config';
import { Inject, Injectable, Logger, type OnModuleInit, type Type } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { AUTH_STRATEGY_TYPE } from './auth.constants';
import { AUTH_MODULE_OPTIONS, type AuthModuleOptions } from './auth.module-definition';
import { AuthError, type AuthStrategy, type Credentials, type Principal } from './auth.types';
import { clientAddressOf } from './client-address';
import type { IncomingMessage } from 'node:http';

/**
 * The one place that decides who a request is. The HTTP guard and the Socket.IO handshake middleware
 * both call it, so a transport added later gets the same answer by calling it too.
 */
@Injectable()
export class AuthService implements OnModuleInit {
  private readonly logger = new Logger(AuthService.name);
  private strategy: AuthStrategy | undefined;

  constructor(
    private readonly moduleRef: ModuleRef,
    @Inject(AUTH_MODULE_OPTIONS) private readonly options: AuthModuleOptions,
    @Inject(AUTH_STRATEGY_TYPE) private readonly strategyType: Type<AuthStrategy>,
  ) {}

  /**
   * Only the selected strategy is constructed: the others may lack their settings, legitimately. A strategy
   * refuses to construct without its own settings (docs/auth.md); that stops the server with one line naming
   * AUTH_MODE, like any other configuration mistake, not with a stack trace.
   */
  async onModuleInit(): Promise<void> {
    try {
      this.strategy = await this.moduleRef.create(this.strategyType);
    } catch (error) {
      throw new ConfigError(
        'AUTH_MODE',
        `the ${this.options.mode} strategy cannot start: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }

  get mode(): string {
    return this.options.mode;
  }

  /** The client's address (an HTTP request, a Socket.IO handshake), by the TRUST_PROXY rule Express's `req.ip` follows too. */
  clientAddress(request: IncomingMessage): string {
    return clientAddressOf(request, this.options.trustProxy);
  }

  /** How many leading bits of an anonymous IPv6 client's address its limits are counted by. */
  get anonymousIpv6PrefixLength(): number {
    return this.options.anonymousIpv6PrefixLength;
  }

  /** Resolves to a principal or rejects with `AuthError`, whatever the strategy threw. */
  async authenticate(credentials: Credentials): Promise<Principal> {
    if (!this.strategy) {
      throw new AuthError('unauthorized', 'Authentication is not ready.');
    }
    try {
      return await this.strategy.authenticate(credentials);
    } catch (error) {
      if (error instanceof AuthError) {
        throw error;
      }
      this.logger.warn(
        `auth strategy ${this.options.mode} failed: ${error instanceof Error ? error.name : 'unknown'}`,
      );
      throw new AuthError('unauthorized', 'The credentials could not be verified.');
    }
  }
}
