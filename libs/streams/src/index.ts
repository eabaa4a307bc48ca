export * from './in-memory-stream-registry';
export * from './live-stream';
export * from './shutdown-coordinator.service';
export * from './stream-registry';
export * from './stream-starter.service';
export * from './streams.constants';
export * from './streams.module';
export * from './streams.module-definition';
