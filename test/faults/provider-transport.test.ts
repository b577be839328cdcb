import { describe, it } from 'vitest'
import { useCleanup } from '../support/fixtures.js'
import { providerFaultScenario } from './provider-scenario.js'

describe('fault: the provider stops answering properly while two broker processes are under load', () => {
  const cleanup = useCleanup()

  it('answers slower than timeout_ms (300 ms): calls time out, 503 + Retry-After at worst, fresh tokens after', async () => {
    await providerFaultScenario(cleanup, 'provider-timeout', { kind: 'latency', ms: 2000 }, { timeoutMs: 300 })
  }, 90_000)

  it('drops connections without answering: 503 + Retry-After at worst, fresh tokens after', async () => {
    await providerFaultScenario(cleanup, 'provider-drop', { kind: 'drop' })
  }, 90_000)
})
