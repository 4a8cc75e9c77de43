/**
 * Shared jest settings for every package. Tests run the TypeScript sources directly
 * (ts-jest, isolated modules so decorators and their metadata are emitted per file),
 * and `@bilevel/*` imports resolve to the sibling package's `src/index.ts`.
 */
const path = require('path');

module.exports = function preset(packageDir) {
  return {
    rootDir: packageDir,
    testEnvironment: 'node',
    testMatch: ['<rootDir>/src/**/*.test.ts', '<rootDir>/test/**/*.test.ts'],
    transform: {
      '^.+\\.ts$': ['ts-jest', { tsconfig: path.join(packageDir, 'tsconfig.spec.json'), diagnostics: false }],
    },
    moduleNameMapper: {
      '^@bilevel/([a-z-]+)/testing$': path.join(__dirname, 'packages/$1/src/testing/index.ts'),
      '^@bilevel/([a-z-]+)$': path.join(__dirname, 'packages/$1/src/index.ts'),
    },
    setupFiles: [path.join(__dirname, 'tools/jest/setup.js')],
    testTimeout: 120000,
    maxWorkers: 1,
  };
};
