export * from './sse-writer';
export * from './sse.controller';
export * from './sse.module';
