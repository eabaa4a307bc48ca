export * from './openai-compat.module';
export * from './openai-error';
export * from './openai-error.filter';
