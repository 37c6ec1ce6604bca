/** Jest runs the TypeScript specs as ESM through ts-jest (got v14 is ESM-only). */
export default {
  // Node's, failing a spec file that leaves a handle open (spec/environment.cjs).
  testEnvironment: '<rootDir>/spec/environment.cjs',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }],
  },
  testMatch: ['<rootDir>/spec/**/*.test.ts'],
  // The image's build context (build/image-context.mjs) holds a copy of package.json.
  modulePathIgnorePatterns: ['<rootDir>/.image/'],
  setupFiles: ['<rootDir>/spec/setup-signal-exit.cjs'],
  // One Ceph gateway shared by the suites that need one (spec/helpers/ceph-shared.ts).
  globalSetup: '<rootDir>/spec/global-setup.js',
  globalTeardown: '<rootDir>/spec/global-teardown.js',
  testTimeout: 60000,
  maxWorkers: 2,
};
