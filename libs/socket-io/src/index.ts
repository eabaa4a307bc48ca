export * from './completions.gateway';
export * from './socket-io.module';
export * from './completions-io.adapter';
export * from './engine-queue';
