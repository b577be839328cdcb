import { describe, it } from 'vitest'
import { useCleanup } from '../support/fixtures.js'
import { providerFaultScenario } from './provider-scenario.js'

describe('fault: the provider answers errors while two broker processes are under load', () => {
  const cleanup = useCleanup()

  it('5xx for longer than a token lives: only 503 + Retry-After, never an expired token, fresh tokens after', async () => {
    await providerFaultScenario(cleanup, 'provider-5xx', { kind: 'server-error', status: 503 })
  }, 90_000)

  it('429 with Retry-After: backs off, never an expired token, fresh tokens after', async () => {
    await providerFaultScenario(cleanup, 'provider-429', { kind: 'rate-limit', retryAfter: '2' })
  }, 90_000)
})
