import { describe, expect, it } from 'vitest'
import { sleep } from '../../src/time.js'
import { startBrokerCluster } from '../support/cluster.js'
import { useCleanup } from '../support/fixtures.js'
import { startOAuth2StandIn } from '../support/providers/index.js'
import { testRedisUrl } from '../support/redis.js'
import { waitFor } from '../support/wait.js'
import { askToken, firstFreshAnswer, reportRecovery } from './harness.js'

describe('fault: a provider answers 200 with a lifetime that is no lifetime', () => {
  const cleanup = useCleanup()

  it.each([
    ['expires_in: 0', 0],
    ['expires_in: 1e12', 10 ** 12],
    ['expires_in: "soon"', 'soon']
  ])('%s: 502 CB_PROVIDER_BAD_RESPONSE with Retry-After, never a token; a good answer is served again', async (_name, value) => {
    const oauth2 = cleanup.add(await startOAuth2StandIn({ lifetimeSeconds: 3600 }))
    oauth2.setFault({ kind: 'malformed-lifetime', value })
    const cluster = cleanup.add(await startBrokerCluster({
      replicas: 1,
      redisUrl: testRedisUrl(),
      credentials: [{ id: 'api', provider: 'oauth2', environment: 'sandbox', secret: 'secret/oauth2', token_url: oauth2.tokenUrl, timeout_ms: 500 }],
      secrets: { 'secret/oauth2': { ...oauth2.secret } }
    }))
    const during = []
    for (let i = 0; i < 5; i++) {
      during.push(await askToken(cluster.processes, 0, 'api'))
      await sleep(100)
    }
    expect(oauth2.mintAttempts).toBeGreaterThan(0)
    for (const answer of during) {
      expect(answer).toMatchObject({ status: 502, code: 'CB_PROVIDER_BAD_RESPONSE' })
      expect(answer.contentType).toMatch(/^application\/problem\+json/)
      expect(Number(answer.retryAfter)).toBeGreaterThanOrEqual(1)
      expect(answer.token).toBeUndefined()
    }
    oauth2.clearFaults()
    const clearedAt = Date.now()
    const after: Array<Awaited<ReturnType<typeof askToken>>> = []
    await waitFor('a token once the provider answers well', async () => {
      const answer = await askToken(cluster.processes, 0, 'api')
      after.push(answer)
      return answer.status === 200
    }, { timeout: 5000, interval: 100 })
    const fresh = firstFreshAnswer(after, oauth2, clearedAt) as NonNullable<ReturnType<typeof firstFreshAnswer>>
    expect(oauth2.isTokenValid(fresh.token as string)).toBe(true)
    expect(fresh.expiresIn).toBeGreaterThan(3500)
    reportRecovery({ fault: `provider-bad-lifetime-${String(value)}`, recoveryMs: fresh.receivedAt - clearedAt, measuredAs: 'good answers again → first token served', requests: during.length + after.length, ok: 1, unavailable503: 0, mints: oauth2.mints })
  }, 30_000)
})
