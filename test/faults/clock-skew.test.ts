import { existsSync } from 'node:fs'
import { beforeAll, describe, expect, it } from 'vitest'
import { clusterApiKey, startBrokerCluster } from '../support/cluster.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn } from '../support/providers/index.js'
import { testRedisUrl } from '../support/redis.js'
import { askToken, describeProblems, faultEnv, judge, reportRecovery, startLoad, type Answer, type Verdict } from './harness.js'
import { sleep } from '../../src/time.js'
import { waitFor } from '../support/wait.js'

/**
 * Clock skew between broker processes, made with libfaketime (Debian package `faketime`, installed by
 * .ci/run): LD_PRELOAD'ed into one process with FAKETIME="+5m" and into another with "-5m"; the third
 * keeps the real clock, as do Redis and the provider stand-in. Node reads time through the libc calls
 * libfaketime wraps (Date.now, new Date, timers keep working), which the test checks through each
 * process's HTTP `Date` header.
 */
const libfaketime = [
  '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1',
  '/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1',
  '/usr/lib/faketime/libfaketimeMT.so.1'
].find(path => existsSync(path))

const skews = [0, 300, -300]
/** Kigo/Klavi-like: long against the test, short enough that a 5 min skew is a sixth of its life. */
const lifetimeSeconds = 1800

interface Adoption { refreshedOn: number, status: number, minted: boolean, adoptedAfterMs: Array<number | null> }

describe.runIf(libfaketime !== undefined)('fault: the clocks of three broker processes differ by ±5 minutes', () => {
  const cleanup = useCleanup({ after: 'all' })
  let answers: Answer[] = []
  let verdict: Verdict | undefined
  let measuredSkewSeconds: number[] = []
  const adoptions: Adoption[] = []

  beforeAll(async () => {
    const kivra = cleanup.add(await startKivraStandIn({ lifetimeSeconds }))
    const cluster = cleanup.add(await startBrokerCluster({
      replicas: 3,
      redisUrl: testRedisUrl(),
      credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, timeout_ms: 1000 }],
      secrets: { 'secret/kivra': { ...kivra.secret } },
      env: faultEnv,
      processEnv: (index): Record<string, string> => skews[index] === 0 ? {} : { LD_PRELOAD: libfaketime as string, FAKETIME: `${(skews[index] as number) > 0 ? '+' : '-'}${Math.abs(skews[index] as number / 60)}m` }
    }))
    const standIn = kivra
    const processes = cluster.processes
    measuredSkewSeconds = await Promise.all(processes.map(async process => {
      const response = await fetch(`${process.url}/healthz`)
      await response.arrayBuffer()
      return Math.round((Date.parse(response.headers.get('date') ?? '') - Date.now()) / 1000)
    }))

    const load = startLoad(processes, 'kivra', { maxDurationMs: 60_000 })
    await waitFor('a first token', () => load.answers.some(answer => answer.status === 200), { timeout: 10_000, interval: 100 })
    await sleep(1500)
    // A refresh on each process in turn (skewed ones first), under load: does every process take up the
    // new grant, whoever minted it?
    for (const refreshedOn of [1, 2, 0]) {
      const issuedBefore = new Set(standIn.issuedTokens)
      const response = await fetch(`${(processes[refreshedOn] as (typeof processes)[number]).url}/v1/admin/credentials/kivra/refresh`, { method: 'POST', headers: { authorization: `Bearer ${clusterApiKey}-admin` }, signal: AbortSignal.timeout(10_000) })
      await response.arrayBuffer()
      const refreshedAt = Date.now()
      const fresh = standIn.issuedTokens.find(token => !issuedBefore.has(token))
      const adoptedAfterMs = await Promise.all(processes.map(async (_, index) => {
        try {
          const at = await waitFor('the new grant', async () => (await askToken(processes, index, 'kivra')).token === fresh, { timeout: 3000, interval: 100 })
          return at - refreshedAt
        } catch {
          return null
        }
      }))
      adoptions.push({ refreshedOn, status: response.status, minted: fresh !== undefined, adoptedAfterMs })
      await sleep(500)
    }
    answers = await load.stop()
    verdict = judge(answers, standIn)
    const overstatement = (process: number): number => Math.max(0, ...verdict!.overstated.filter(answer => answer.process === process).map(answer => answer.overstatedMs))
    const adoptionTimes = adoptions.flatMap(adoption => adoption.adoptedAfterMs)
    reportRecovery({
      fault: 'clock-skew-5m',
      recoveryMs: adoptionTimes.some(ms => ms === null) ? -1 : Math.max(...adoptionTimes as number[]),
      measuredAs: 'forced refresh on one process → every process serves the new grant (max over the three refreshes; -1: some process never did within 3 s)',
      requests: verdict.total,
      ok: verdict.ok,
      unavailable503: verdict.unavailable,
      mints: standIn.mints,
      details: {
        skewSeconds: skews,
        measuredSkewSeconds,
        lifetimeSeconds,
        adoptions,
        overstatedAnswers: verdict.overstated.length,
        maxOverstatedMsByProcess: processes.map((_, index) => overstatement(index))
      }
    })
  }, 90_000)

  it('libfaketime skews the processes as intended (checked through their HTTP Date headers)', () => {
    skews.forEach((skew, index) => { expect(Math.abs((measuredSkewSeconds[index] as number) - skew)).toBeLessThanOrEqual(2) })
  })

  it('serves no 500 and no expired token, keeps min_ttl in real time, and every process takes up a grant minted ahead of its clock', () => {
    const result = verdict as Verdict
    expect(result.total).toBeGreaterThan(100)
    expect(describeProblems(result)).toBe('')
    expect(result.badErrors).toEqual([])
    expect(result.expired).toEqual([])
    expect(result.belowMinTtl).toEqual([])
    expect(adoptions.map(adoption => adoption.status)).toEqual([200, 200, 200])
    // The refresh on the +5 min process mints, and every process serves that grant within moments.
    const ahead = adoptions[0] as Adoption
    expect(ahead.minted).toBe(true)
    expect(ahead.adoptedAfterMs.every(ms => ms !== null && ms < 3000)).toBe(true)
  })

  // A grant's times come from the clock of the replica that minted it. Readers take the earlier of its
  // stored expiry and Redis' own remaining TTL (so skew never lengthens a grant), and a grant written
  // under a later lease (a higher fence) replaces the held one whatever the clocks say.
  it('expires_in never overstates a token\'s life, a forced refresh mints on every process, and every process takes up every new grant', () => {
    const result = verdict as Verdict
    expect(adoptions.map(adoption => adoption.minted)).toEqual([true, true, true])
    expect(result.overstated.map(answer => ({ process: answer.process, overstatedMs: answer.overstatedMs })).slice(0, 5)).toEqual([])
    for (const adoption of adoptions) expect(adoption.adoptedAfterMs.every(ms => ms !== null)).toBe(true)
  })
})
