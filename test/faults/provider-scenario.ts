import { expect } from 'vitest'
import { startBrokerCluster } from '../support/cluster.js'
import type { Cleanup } from '../support/fixtures.js'
import { startKivraStandIn, type Fault } from '../support/providers/index.js'
import { testRedisUrl } from '../support/redis.js'
import { describeProblems, faultEnv, firstFreshAnswer, judge, reportRecovery, startLoad } from './harness.js'
import { sleep } from '../../src/time.js'
import { waitFor } from '../support/wait.js'

/** Short enough that a refresh falls due (75 %) and the grant expires while the fault lasts. */
const lifetimeSeconds = 5
const faultMs = 6000

/**
 * Two broker processes under load on a 5 s Kivra token; the provider misbehaves on its mint endpoint for
 * 6 s (longer than the token lives), then behaves again. Returns after the assertions; the stand-in and
 * the processes are closed by `cleanup` after the test.
 */
export async function providerFaultScenario (cleanup: Cleanup, name: string, fault: Fault, options: { timeoutMs?: number } = {}): Promise<void> {
  const kivra = cleanup.add(await startKivraStandIn({ lifetimeSeconds }))
  const cluster = cleanup.add(await startBrokerCluster({
    replicas: 2,
    redisUrl: testRedisUrl(),
    credentials: [{
      id: 'kivra',
      provider: 'kivra',
      environment: 'sandbox',
      secret: 'secret/kivra',
      base_url: kivra.url,
      timeout_ms: options.timeoutMs ?? 500,
      refresh: { ratio: 0.75, margin_seconds: 0, jitter_ratio: 0.05 }
    }],
    secrets: { 'secret/kivra': { ...kivra.secret } },
    env: faultEnv
  }))
  const standIn = kivra
  const load = startLoad(cluster.processes, 'kivra', { maxDurationMs: 90_000 })
  await waitFor('a first token', () => load.answers.some(answer => answer.status === 200), { timeout: 10_000, interval: 100 })

  const attemptsBefore = standIn.mintAttempts
  standIn.setFault(fault, { endpoint: 'mint' })
  const faultAt = Date.now()
  await sleep(faultMs)
  standIn.clearFaults()
  const clearedAt = Date.now()
  const attemptsDuringFault = standIn.mintAttempts - attemptsBefore

  // Recovery: every process hands out a token minted after the fault was removed.
  const processes = cluster.processes
  await waitFor('fresh tokens from every process', () => processes.every((_, index) => firstFreshAnswer(load.answers, standIn, clearedAt, index) !== undefined), { timeout: 45_000, interval: 100 })
  const recoveredAt = Date.now()
  const mintsAtRecovery = standIn.mints
  // No lost refresh: the credential goes on refreshing on schedule afterwards.
  await waitFor('the next scheduled refresh after recovery', () => standIn.mints >= mintsAtRecovery + 1, { timeout: lifetimeSeconds * 1000 + 5000, interval: 100 })
  await sleep(1000)
  const answers = await load.stop()

  const verdict = judge(answers, standIn)
  const first = firstFreshAnswer(answers, standIn, clearedAt) as NonNullable<ReturnType<typeof firstFreshAnswer>>
  const outage = answers.filter(answer => answer.status !== 200)
  reportRecovery({
    fault: name,
    recoveryMs: first.receivedAt - clearedAt,
    measuredAs: 'fault removed → first answer carrying a token minted after that',
    requests: verdict.total,
    ok: verdict.ok,
    unavailable503: verdict.unavailable,
    mints: standIn.mints,
    details: {
      faultMs,
      lifetimeSeconds,
      mintAttemptsDuringFault: attemptsDuringFault,
      allProcessesFreshAfterMs: recoveredAt - clearedAt,
      firstUnavailableAfterFaultMs: outage.length === 0 ? null : Math.min(...outage.map(answer => answer.receivedAt)) - faultAt,
      lastUnavailableAfterClearMs: outage.length === 0 ? null : Math.max(...outage.map(answer => answer.receivedAt)) - clearedAt
    }
  })

  expect(attemptsDuringFault, 'the fault was exercised: the brokers tried to mint while it lasted').toBeGreaterThan(0)
  expect(describeProblems(verdict)).toBe('')
  expect(verdict.badErrors).toEqual([])
  expect(verdict.expired).toEqual([])
  expect(verdict.belowMinTtl).toEqual([])
  expect(verdict.unknownTokens).toEqual([])
  expect(verdict.overstated.map(answer => answer.overstatedMs)).toEqual([])
  // Recovery without a restart: the same processes, still running, served after the fault.
  expect(processes.every(process => process.child.exitCode === null)).toBe(true)
}
