import { modelAllowed } from '@app/contracts';
import { Inject, Injectable } from '@nestjs/common';
import { AUTH_MODULE_OPTIONS, type AuthModuleOptions } from './auth.module-definition';
import type { Principal } from './auth.types';

/**
 * Which models a principal may use: within the deployment's `ALLOWED_MODELS` and the principal's own list, when
 * either is set. Every surface asks it with the model the request would run (its own, or the default), so SSE,
 * Socket.IO and `/v1` refuse the same requests; each frames the refusal its own way (`403 forbidden`).
 */
@Injectable()
export class ModelPolicy {
  static readonly REFUSAL = 'This model is not available to you.';

  constructor(@Inject(AUTH_MODULE_OPTIONS) private readonly options: AuthModuleOptions) {}

  allows(principal: Principal, model: string): boolean {
    return modelAllowed(model, this.options.allowedModels, principal.models);
  }

  /** The model a CompletionRequest-like payload asks for (trimmed, as the schema reads it), or `defaultModel`. */
  static requestedModel(payload: unknown, defaultModel: string): string {
    const model = (payload as { model?: unknown } | null)?.model;
    return typeof model === 'string' && model.trim() !== '' ? model.trim() : defaultModel;
  }
}
