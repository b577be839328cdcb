/**
 * Provider stand-ins for tests, benches and the demo. They live in src/embedded/stand-ins/ (the embedded
 * default starts them in the broker's own process); this entry keeps the test imports short and adds the
 * test-only webhook signers.
 */
export * from '../../../src/embedded/stand-ins/index.js'
export * from './webhooks.js'
