export * from './app-config.module';
export * from './app-config.schema';
export * from './config.constants';
export * from './load-config';
export * from './upstream-table';
