import { expect } from 'vitest'
import { startBrokerCluster, loadTokens } from '../support/cluster.js'
import { startKivraStandIn } from '../support/providers/index.js'
import type { TestTopology } from '../support/redis-topology.js'

/**
 * Three broker processes (what `npm start` runs) under HTTP load over several refresh cycles of a 4 s
 * token, on the Redis given (one node by URL, or a Sentinel group or Cluster): one mint per refresh
 * cycle, and never an expired token. Returns the mints per cycle observed.
 */
export async function expectOneMintPerCycle (redis: { redisUrl: string } | { topology: TestTopology }): Promise<number> {
  const lifetimeSeconds = 4
  const kivra = await startKivraStandIn({ lifetimeSeconds })
  try {
    const cluster = await startBrokerCluster({
      replicas: 3,
      ...redis,
      credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, refresh: { ratio: 0.5, margin_seconds: 0, jitter_ratio: 0 } }],
      secrets: { 'secret/kivra': { ...kivra.secret } }
    })
    try {
      const answers = await loadTokens(cluster.processes, 'kivra', { concurrency: 30, durationMs: 13_000, minTtl: 0 })
      expect(answers.length).toBeGreaterThan(300)
      expect(answers.filter(answer => answer.status !== 200)).toEqual([])
      for (const answer of answers) {
        const info = kivra.tokenInfo(answer.token as string)
        expect(info).toBeDefined()
        const realLifeMs = (info as NonNullable<typeof info>).expiresAt - answer.receivedAt
        // Valid when it arrives, and expires_in never promises more life than the token really has (it is
        // whole seconds rounded down, computed a moment before the answer arrived).
        expect(realLifeMs).toBeGreaterThan(0)
        expect((answer.expiresIn as number) * 1000).toBeLessThanOrEqual(realLifeMs + 1000)
      }

      // Mints, in order: one at cold start, then one per cycle (at 50 % of the 4 s lifetime). Two replicas
      // minting in the same cycle would show up as two mints milliseconds apart.
      const mintTimes = kivra.requests.filter(request => request.endpoint === 'mint').map(request => request.at)
      expect(kivra.mints).toBe(mintTimes.length)
      expect(mintTimes.length).toBeGreaterThanOrEqual(4)
      for (let i = 1; i < mintTimes.length; i++) {
        expect((mintTimes[i] as number) - (mintTimes[i - 1] as number)).toBeGreaterThan(0.4 * lifetimeSeconds * 1000)
      }
      const served = new Set(answers.map(answer => answer.token))
      expect(served.size).toBeLessThanOrEqual(mintTimes.length)
      // As bench/amplification.ts counts them: a cycle is a group of mints less than a quarter of the
      // lifetime apart.
      let cycles = 1
      for (let i = 1; i < mintTimes.length; i++) if ((mintTimes[i] as number) - (mintTimes[i - 1] as number) > 0.25 * lifetimeSeconds * 1000) cycles += 1
      return Number((mintTimes.length / cycles).toFixed(2))
    } finally {
      await cluster.close()
    }
  } finally {
    await kivra.close()
  }
}
