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
  // A test worker's memory grows with every spec file it runs (jest's ESM mode keeps part of each
  // file's module graph: jestjs/jest#14605), and a worker's exit frees it all: past a few hundred
  // MB that took longer than the 500 ms jest waits for a worker to end on a loaded machine, and
  // every whole run ended with "A worker process has failed to exit gracefully". A worker past
  // this much heap after a file is replaced by a fresh one, so the workers that end the run are
  // small and end at once.
  workerIdleMemoryLimit: '200MB',
  // The default reporter, and one that fails the run if jest still has to force a worker to exit.
  reporters: ['default', '<rootDir>/spec/exit-reporter.js'],
};
