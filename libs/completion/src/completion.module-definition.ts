import { ConfigurableModuleBuilder, type Provider, type Type } from '@nestjs/common';
import { COMPLETION_PROVIDER } from './completion.constants';
import type { CompletionProvider } from './completion-provider';
import { type OpenAiCompatibleOptions, OpenAiCompatibleProvider } from './openai-compatible.provider';

export interface CompletionModuleOptions {
  /** The model when a request names none. */
  defaultModel: string;
  /** Time allowed from the request to the first token, retries included. */
  firstTokenTimeoutMs: number;
  /** Longest silence allowed between two chunks once tokens flow. */
  idleTimeoutMs: number;
  /** Settings of the default provider, any OpenAI-compatible server (unless `provider` is given). */
  openai?: OpenAiCompatibleOptions;
  /** The provider itself, made by the composition (the upstream router's); instead of `openai`. */
  provider?: CompletionProvider;
}

export interface CompletionModuleExtras {
  /** Global by default: the stream registry and any transport inject the one service. */
  isGlobal?: boolean;
  /** Replaces the OpenAI-compatible provider; Nest instantiates it, so it can inject what it needs. */
  provider?: Type<CompletionProvider>;
}

export const {
  ConfigurableModuleClass: CompletionModuleBase,
  MODULE_OPTIONS_TOKEN: COMPLETION_MODULE_OPTIONS,
} = new ConfigurableModuleBuilder<CompletionModuleOptions>()
  .setClassMethodName('forRoot')
  .setExtras<CompletionModuleExtras>({ isGlobal: true }, (definition, extras) => ({
    ...definition,
    global: extras.isGlobal,
    providers: [...(definition.providers ?? []), upstreamProvider(extras.provider)],
  }))
  .build();

function upstreamProvider(custom: Type<CompletionProvider> | undefined): Provider {
  return custom
    ? { provide: COMPLETION_PROVIDER, useClass: custom }
    : {
        provide: COMPLETION_PROVIDER,
        inject: [COMPLETION_MODULE_OPTIONS],
        useFactory: (options: CompletionModuleOptions) => {
          if (options.provider) {
            return options.provider;
          }
          if (!options.openai) {
            throw new Error('CompletionModule: give either openai settings or a provider');
          }
          return new OpenAiCompatibleProvider(options.openai);
        },
      };
}
