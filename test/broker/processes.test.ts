import { describe, expect, it } from 'vitest'
import { startBrokerCluster, loadTokens } from '../support/cluster.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn } from '../support/providers/index.js'
import { testRedisUrl } from '../support/redis.js'

describe('three broker processes under HTTP load', () => {
  const cleanup = useCleanup()

  it('mint once per refresh cycle and never hand out an expired token', async () => {
    const lifetimeSeconds = 4
    const kivra = cleanup.add(await startKivraStandIn({ lifetimeSeconds }))
    const cluster = cleanup.add(await startBrokerCluster({
      replicas: 3,
      redisUrl: testRedisUrl(),
      credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, refresh: { ratio: 0.5, margin_seconds: 0, jitter_ratio: 0 } }],
      secrets: { 'secret/kivra': { ...kivra.secret } }
    }))

    const answers = await loadTokens(cluster.processes, 'kivra', { concurrency: 30, durationMs: 13_000, minTtl: 0 })
    const standIn = kivra
    expect(answers.length).toBeGreaterThan(300)
    expect(answers.filter(answer => answer.status !== 200)).toEqual([])
    for (const answer of answers) {
      const info = standIn.tokenInfo(answer.token as string)
      expect(info).toBeDefined()
      const realLifeMs = (info as NonNullable<typeof info>).expiresAt - answer.receivedAt
      // Valid when it arrives, and expires_in never promises more life than the token really has (it is
      // whole seconds rounded down, computed a moment before the answer arrived).
      expect(realLifeMs).toBeGreaterThan(0)
      expect((answer.expiresIn as number) * 1000).toBeLessThanOrEqual(realLifeMs + 1000)
    }

    // Mints, in order: one at cold start, then one per cycle (at 50 % of the 4 s lifetime). Two replicas
    // minting in the same cycle would show up as two mints milliseconds apart.
    const mintTimes = standIn.requests.filter(request => request.endpoint === 'mint').map(request => request.at)
    expect(standIn.mints).toBe(mintTimes.length)
    expect(mintTimes.length).toBeGreaterThanOrEqual(4)
    for (let i = 1; i < mintTimes.length; i++) {
      expect((mintTimes[i] as number) - (mintTimes[i - 1] as number)).toBeGreaterThan(0.4 * lifetimeSeconds * 1000)
    }
    const served = new Set(answers.map(answer => answer.token))
    expect(served.size).toBeLessThanOrEqual(mintTimes.length)
  }, 60_000)
})
