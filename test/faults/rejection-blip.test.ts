import { describe, expect, it } from 'vitest'
import { sleep } from '../../src/time.js'
import { startBrokerCluster } from '../support/cluster.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn } from '../support/providers/index.js'
import { testRedisUrl } from '../support/redis.js'
import { waitFor } from '../support/wait.js'
import { faultEnv, firstFreshAnswer, judge, reportRecovery, startLoad } from './harness.js'

const lifetimeSeconds = 8
const blipMs = 10_000
const processCount = 2
/** The first probe after a rejection comes within 15 s (12-15 s with jitter); then the credential heals. */
const firstProbeMs = 15_000

describe('fault: the provider rejects the client secret for 10 s (a blip on its side), then accepts it again', () => {
  const cleanup = useCleanup()

  it('answers 502 CB_PROVIDER_REJECTED_CREDENTIALS with Retry-After meanwhile, probes on its own schedule, and heals without an operator', async () => {
    const kivra = cleanup.add(await startKivraStandIn({ lifetimeSeconds }))
    const cluster = cleanup.add(await startBrokerCluster({
      replicas: processCount,
      redisUrl: testRedisUrl(),
      credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, timeout_ms: 500 }],
      secrets: { 'secret/kivra': { ...kivra.secret } },
      env: faultEnv
    }))
    const load = startLoad(cluster.processes, 'kivra', { concurrency: 20, maxDurationMs: 90_000 })
    await waitFor('a first token', () => load.answers.some(answer => answer.status === 200), { timeout: 10_000, interval: 50 })

    const attemptsBefore = kivra.mintAttempts
    kivra.setFault({ kind: 'wrong-credentials' }, { endpoint: 'mint' })
    const blipAt = Date.now()
    await sleep(blipMs)
    kivra.clearFaults()
    const healedAt = Date.now()
    const attemptsDuringBlip = kivra.mintAttempts - attemptsBefore
    await waitFor('fresh tokens again', () => firstFreshAnswer(load.answers, kivra, healedAt) !== undefined, { timeout: firstProbeMs + 10_000, interval: 100 })
    await sleep(500)
    const answers = await load.stop()

    const first = firstFreshAnswer(answers, kivra, healedAt) as NonNullable<ReturnType<typeof firstFreshAnswer>>
    const rejected = answers.filter(answer => answer.status === 502)
    const others = answers.filter(answer => answer.status !== 200 && answer.status !== 502)
    const verdict = judge(answers.filter(answer => answer.status !== 502), kivra)
    reportRecovery({
      fault: 'provider-rejects-secret-10s',
      recoveryMs: first.receivedAt - healedAt,
      measuredAs: 'provider accepts the secret again → first answer carrying a token minted after that',
      requests: answers.length,
      ok: verdict.ok,
      unavailable503: verdict.unavailable,
      mints: kivra.mints,
      details: { blipMs, lifetimeSeconds, rejected502: rejected.length, mintAttemptsDuringBlip: attemptsDuringBlip }
    })

    expect(rejected.length, 'the blip reached callers once the grant ran out').toBeGreaterThan(0)
    for (const answer of rejected) {
      expect(answer.code).toBe('CB_PROVIDER_REJECTED_CREDENTIALS')
      expect(Number(answer.retryAfter), 'a 502 says when to try again').toBeGreaterThanOrEqual(1)
    }
    expect(others.filter(answer => !(answer.status === 503 && Number(answer.retryAfter) >= 1))).toEqual([])
    // Thousands of requests, a handful of provider calls: each process probes on its own slow schedule.
    expect(attemptsDuringBlip).toBeLessThanOrEqual(processCount * 3)
    // Healed by the next probe: at most one probe interval after the first rejection, not ten minutes.
    expect(first.receivedAt - blipAt).toBeLessThanOrEqual(lifetimeSeconds * 1000 + firstProbeMs + 2000)
    expect(verdict.expired).toEqual([])
    expect(verdict.belowMinTtl).toEqual([])
  }, 90_000)
})
