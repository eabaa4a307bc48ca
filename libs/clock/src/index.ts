export * from './wall-clock';
