import { describe, expect, it } from 'vitest'
import { clusterApiKey, startBrokerCluster } from '../support/cluster.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn } from '../support/providers/index.js'
import { testRedisUrl } from '../support/redis.js'
import { waitFor } from '../support/wait.js'
import { describeProblems, faultEnv, firstFreshAnswer, judge, reportRecovery, startLoad } from './harness.js'
import { sleep } from '../../src/time.js'

const lifetimeSeconds = 30
/** The setting: mints that take 2.5 s. */
const mintLatencyMs = 2500
/** The refresh lease (3 s by default, renewed by a live holder): how long a dead holder can block the others. */
const leaseMs = 3000
/** Callers that need more life than the held grant has left after the kill: they need the replacement. */
const needingMinTtl = 20

describe('fault: the lease-holding process is killed (SIGKILL) mid-mint', () => {
  const cleanup = useCleanup()

  it('survivors whose grant meets min_ttl answer 200 throughout; those that need a new token get one within the lease + one mint', async () => {
    const kivra = cleanup.add(await startKivraStandIn({ lifetimeSeconds }))
    const cluster = cleanup.add(await startBrokerCluster({
      replicas: 3,
      redisUrl: testRedisUrl(),
      // timeout_ms above the mint latency: slow mints are still good mints. Refreshed at 95 %: none runs
      // on its own during the test, so the only refreshes are the one killed and the one that replaces it.
      credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, timeout_ms: 5000, refresh: { ratio: 0.95, margin_seconds: 0, jitter_ratio: 0 } }],
      secrets: { 'secret/kivra': { ...kivra.secret } },
      env: faultEnv
    }))
    const processes = cluster.processes
    const load = startLoad(processes, 'kivra', { maxDurationMs: 90_000 })
    await waitFor('a first token', () => load.answers.some(answer => answer.status === 200), { timeout: 10_000, interval: 50 })
    const firstMintAt = kivra.requests.find(request => request.endpoint === 'mint')?.at ?? Date.now()
    // The grant is 12 s old at the kill: 18 s left, below what the needing callers ask for (20 s).
    await sleep(Math.max(0, firstMintAt + 12_000 - Date.now()))

    // Process 0 refreshes (forced, so it holds the lease) against the slow provider and is killed the
    // moment the provider has its mint request: mid-mint, lease held.
    kivra.setFault({ kind: 'latency', ms: mintLatencyMs }, { endpoint: 'mint' })
    const holder = processes[0] as (typeof processes)[number]
    const attemptsBefore = kivra.mintAttempts
    void fetch(`${holder.url}/v1/admin/credentials/kivra/refresh`, { method: 'POST', headers: { authorization: `Bearer ${clusterApiKey}-admin` } }).catch(() => {})
    await waitFor('the holder to send its mint request', () => kivra.mintAttempts > attemptsBefore, { timeout: 5000, interval: 5 })
    // Callers of the holder lose their connections from the moment the signal is sent.
    const killSentAt = Date.now()
    await holder.stop('SIGKILL')
    const killedAt = Date.now()
    const needing = startLoad(processes, 'kivra', { concurrency: 6, minTtl: needingMinTtl, only: [1, 2], maxDurationMs: 60_000 })

    const survivors = [1, 2]
    await waitFor('fresh tokens for the callers that need one, from both survivors', () => survivors.every(index => firstFreshAnswer(needing.answers, kivra, killedAt, index) !== undefined), { timeout: 30_000, interval: 50 })
    const freshAt = Date.now()
    await sleep(500)
    const [answers, needed] = [await load.stop(), await needing.stop()]

    const verdict = judge(answers, kivra, { killed: { process: 0, at: killSentAt } })
    const neededVerdict = judge(needed, kivra, { minTtl: needingMinTtl })
    const first = firstFreshAnswer(needed, kivra, killedAt) as NonNullable<ReturnType<typeof firstFreshAnswer>>
    const mintsAfterKill = kivra.requests.filter(request => request.endpoint === 'mint' && request.at > killedAt)
    const survivorsAnswers = answers.filter(answer => answer.process !== 0 && answer.receivedAt >= killedAt)
    reportRecovery({
      fault: 'lease-holder-sigkill',
      recoveryMs: first.receivedAt - killedAt,
      measuredAs: 'lease holder killed mid-mint → first answer to a caller that needed a new token',
      requests: verdict.total + neededVerdict.total,
      ok: verdict.ok + neededVerdict.ok,
      unavailable503: verdict.unavailable + neededVerdict.unavailable,
      mints: kivra.mints,
      details: {
        lifetimeSeconds,
        mintLatencyMs,
        leaseMs,
        mintsAfterKill: mintsAfterKill.length,
        nextMintAfterKillMs: mintsAfterKill[0] === undefined ? null : mintsAfterKill[0].at - killedAt,
        bothSurvivorsFreshAfterMs: freshAt - killedAt,
        slowestNeededAnswerMs: Math.max(...needed.map(answer => answer.receivedAt - answer.sentAt))
      }
    })

    // Survivors whose grant still met min_ttl answered 200 throughout.
    expect(survivorsAnswers.length).toBeGreaterThan(0)
    expect(survivorsAnswers.filter(answer => answer.status !== 200)).toEqual([])
    expect(describeProblems(verdict)).toBe('')
    // Those that needed a new token got one within the lease and one mint (and some slack for this machine).
    expect(first.receivedAt - killedAt).toBeLessThanOrEqual(leaseMs + mintLatencyMs + 1500)
    expect(describeProblems(neededVerdict)).toBe('')
    expect(neededVerdict.expired).toEqual([])
    expect(neededVerdict.belowMinTtl).toEqual([])
    // One replacement mint for the cluster, by a survivor (the killed holder's never completed).
    expect(mintsAfterKill).toHaveLength(1)
    expect(survivors.every(index => processes[index]?.child.exitCode === null)).toBe(true)
  }, 90_000)
})
