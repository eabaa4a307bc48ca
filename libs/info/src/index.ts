export * from './info.constants';
export * from './info.controller';
export * from './info.module';
export * from './time-probe';
