import { describe, expect, it } from 'vitest'
import { sleep } from '../../src/time.js'
import { startBrokerCluster } from '../support/cluster.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn, type Fault } from '../support/providers/index.js'
import { testRedisUrl } from '../support/redis.js'
import { waitFor } from '../support/wait.js'
import { describeProblems, faultEnv, firstFreshAnswer, judge, reportRecovery, startLoad } from './harness.js'

/** The setting: 8 s tokens, 25 callers asking throughout, 3 processes. */
const lifetimeSeconds = 8
const processCount = 3
/** The breaker's shortest pause (0.5 s less a quarter of jitter): no replica calls a failing endpoint more often. */
const shortestPauseMs = 375
/** Recovery bound: once the provider is healthy, the next caller or the next probe gets a token within this. */
const recoveryBoundMs = 2000

describe('fault: a short provider outage heals within 2 s of the provider recovering', () => {
  const cleanup = useCleanup()

  it.each([
    ['a 12 s run of 500s', { kind: 'server-error', status: 500 } as Fault, 12_000, 'provider-500-12s'],
    ['10 s of connection resets', { kind: 'drop' } as Fault, 10_000, 'provider-reset-10s']
  ])('%s: callers never drive more than one call per pause per replica, and a token is served within 2 s of recovery', async (_name, fault, faultMs, report) => {
    const kivra = cleanup.add(await startKivraStandIn({ lifetimeSeconds }))
    const cluster = cleanup.add(await startBrokerCluster({
      replicas: processCount,
      redisUrl: testRedisUrl(),
      credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, timeout_ms: 500 }],
      secrets: { 'secret/kivra': { ...kivra.secret } },
      env: faultEnv
    }))
    const load = startLoad(cluster.processes, 'kivra', { concurrency: 25, maxDurationMs: 90_000 })
    await waitFor('a first token', () => load.answers.some(answer => answer.status === 200), { timeout: 10_000, interval: 50 })

    const attemptsBefore = kivra.mintAttempts
    kivra.setFault(fault, { endpoint: 'mint' })
    await sleep(faultMs)
    kivra.clearFaults()
    const clearedAt = Date.now()
    const attemptsDuringFault = kivra.mintAttempts - attemptsBefore
    await waitFor('fresh tokens from every process', () => cluster.processes.every((_, index) => firstFreshAnswer(load.answers, kivra, clearedAt, index) !== undefined), { timeout: 20_000, interval: 50 })
    await sleep(500)
    const answers = await load.stop()

    const verdict = judge(answers, kivra)
    const first = firstFreshAnswer(answers, kivra, clearedAt) as NonNullable<ReturnType<typeof firstFreshAnswer>>
    const perProcess = cluster.processes.map((_, index) => (firstFreshAnswer(answers, kivra, clearedAt, index)?.receivedAt ?? Infinity) - clearedAt)
    reportRecovery({
      fault: report,
      recoveryMs: first.receivedAt - clearedAt,
      measuredAs: 'provider healthy again → first answer carrying a token minted after that',
      requests: verdict.total,
      ok: verdict.ok,
      unavailable503: verdict.unavailable,
      mints: kivra.mints,
      details: { faultMs, lifetimeSeconds, processes: processCount, callers: 25, mintAttemptsDuringFault: attemptsDuringFault, everyProcessFreshAfterMs: Math.max(...perProcess) }
    })

    expect(attemptsDuringFault, 'the fault was exercised').toBeGreaterThan(0)
    expect(attemptsDuringFault, 'one provider call per breaker pause per replica at most').toBeLessThanOrEqual(processCount * (Math.ceil(faultMs / shortestPauseMs) + 1))
    expect(first.receivedAt - clearedAt).toBeLessThanOrEqual(recoveryBoundMs)
    for (const ms of perProcess) expect(ms, 'each process serves a fresh token within the bound').toBeLessThanOrEqual(recoveryBoundMs + 500)
    expect(describeProblems(verdict)).toBe('')
    expect(verdict.expired).toEqual([])
    expect(verdict.belowMinTtl).toEqual([])
    expect(verdict.overstated.map(answer => answer.overstatedMs)).toEqual([])
  }, 90_000)
})
