export * from './redis-connection';
export * from './redis-health.indicator';
export * from './redis.module';
export * from './redis.module-definition';
export * from './redis-script';
