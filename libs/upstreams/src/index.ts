export * from './deployment-health';
export * from './deployments';
export * from './routing-decisions';
export * from './routing.provider';
export * from './upstream-attempt';
export * from './upstream-router';
export * from './upstreams.constants';
export * from './upstreams.module';
