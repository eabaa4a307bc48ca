export * from './completion-provider';
export * from './completion-request.schema';
export * from './completion.constants';
export * from './completion.module';
export * from './completion.module-definition';
export * from './completion.service';
export * from './openai-compatible.provider';
export * from './upstream.error';
