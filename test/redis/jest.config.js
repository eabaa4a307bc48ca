// @ts-check
/**
 * The suites on a real redis-server (Debian's package), run by `npm run test:redis` within `npm run test:e2e`;
 * `npm test` leaves them out, since it must pass on a machine with nothing but Node.
 */
const base = require('../../jest.config.js');

/** @type {import('jest').Config} */
module.exports = {
  ...base,
  rootDir: '../..',
  roots: ['<rootDir>/test/redis'],
  testMatch: ['<rootDir>/test/redis/**/*.e2e-spec.ts'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  testTimeout: 60_000,
  // One suite at a time: each starts its own redis-server and several gateways on a shared two-core machine.
  maxWorkers: 1,
};
