export * from './completion-event';
export * from './completion-request';
export * from './error-codes';
export * from './request-policy';
export * from './server-info';
export * from './socket-events';
export * from './sse';
