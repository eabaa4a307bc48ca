export * from './sse-connection';
export * from './sse-writer';
export * from './sse-writer.controller';
export * from './sse.controller';
export * from './sse.module';
