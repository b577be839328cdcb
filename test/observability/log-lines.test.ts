import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startApiWorld, type ApiWorld } from '../api/world.js'
import { waitFor } from '../support/wait.js'
import { duplicateKeys } from '../support/json-keys.js'
import { loadConfig } from '../../src/config.js'
import { ConfigError } from '../../src/errors.js'

/** Expected transient failures (issue 13 item 5): message, kind and code without a stack, except at debug. */
describe.each(['info', 'debug'] as const)('log lines at LOG_LEVEL=%s', (logLevel) => {
  let world: ApiWorld
  beforeAll(async () => {
    // kigo-down answers every mint with a 503, klavi-dropping drops the connection: both retried at start.
    world = await startApiWorld({ logLevel })
    // kivra-rejecting is refused its client secret (40104): permanent, not transient.
    await waitFor('refresh failures of all three', () => {
      const failed = world.testApp.logs.entries().filter(entry => entry.msg === 'refresh failed').map(entry => entry.credentialId)
      return ['kigo-down', 'klavi-dropping', 'kivra-rejecting'].every(id => failed.includes(id))
    })
  })
  afterAll(async () => { await world.close() })

  it(logLevel === 'info' ? 'log a provider 5xx or reset with message and kind, and no stack' : 'add the stack at debug', () => {
    const failures = world.testApp.logs.entries().filter(entry => entry.msg === 'refresh failed' && ['kigo-down', 'klavi-dropping'].includes(entry.credentialId as string))
    expect(failures.length).toBeGreaterThanOrEqual(2)
    for (const failure of failures) {
      const err = failure.err as Record<string, unknown>
      expect(err).toMatchObject({ type: 'ProviderError', kind: 'transient', message: expect.any(String) as string })
      if (logLevel === 'info') expect(err).not.toHaveProperty('stack')
      else expect(err.stack).toEqual(expect.stringContaining('ProviderError'))
    }
  })

  it('keep the stack of a failure that is not an expected transient one (a rejected client secret)', () => {
    const rejected = world.testApp.logs.entries().find(entry => entry.msg === 'refresh failed' && entry.credentialId === 'kivra-rejecting')
    expect((rejected?.err as Record<string, unknown> | undefined)?.stack).toEqual(expect.stringContaining('ProviderError'))
  })

  it.runIf(logLevel === 'debug')('log repeated failures of a dead endpoint at warn once, then at debug', async () => {
    const kigoDown = (): Array<Record<string, unknown>> => world.testApp.logs.entries().filter(entry => entry.msg === 'refresh failed' && entry.credentialId === 'kigo-down')
    await waitFor('a few retries of kigo-down', () => kigoDown().length >= 4)
    expect(kigoDown().filter(entry => entry.level === 40)).toHaveLength(1)
    const opened = world.testApp.logs.entries().filter(entry => entry.msg === 'circuit breaker changed state' && entry.level === 40)
    expect(opened.length).toBeLessThanOrEqual(new Set(opened.map(entry => entry.endpoint)).size)
  })

  it('write every line as JSON with an ISO time and no key twice', () => {
    expect(world.testApp.logs.lines.length).toBeGreaterThan(5)
    for (const line of world.testApp.logs.lines) {
      const entry = JSON.parse(line) as { time: unknown }
      expect(entry.time, line).toEqual(expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/))
      expect(duplicateKeys(line), line).toEqual([])
    }
  })
})

describe('LOG_FORMAT', () => {
  it('is json by default, pretty when asked, and anything else is a configuration error', () => {
    expect(loadConfig({ LOG_LEVEL: 'silent' }).logFormat).toBe('json')
    expect(loadConfig({ LOG_LEVEL: 'silent', LOG_FORMAT: 'pretty' }).logFormat).toBe('pretty')
    expect(() => loadConfig({ LOG_LEVEL: 'silent', LOG_FORMAT: 'fancy' })).toThrow(ConfigError)
  })
})
