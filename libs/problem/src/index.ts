export * from './problem-details.filter';
export * from './problem.exception';
