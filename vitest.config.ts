import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Files run in parallel on 2 cores; each test owns its Redis key prefix, so none can see another's keys.
    pool: 'forks',
    reporters: ['default', './test/support/summary-reporter.ts']
  }
})
