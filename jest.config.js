/** Jest runs the TypeScript specs as ESM through ts-jest (got v14 is ESM-only). */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }],
  },
  testMatch: ['<rootDir>/spec/**/*.test.ts'],
  setupFiles: ['<rootDir>/spec/setup-signal-exit.cjs'],
  testTimeout: 60000,
  maxWorkers: 2,
};
