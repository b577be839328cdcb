import { describe, expect, it } from 'vitest'
import { startBrokerCluster } from '../support/cluster.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn } from '../support/providers/index.js'
import { hasRedisServerBinary, spawnRedisServer } from '../support/redis-server.js'
import { describeProblems, faultEnv, firstFreshAnswer, judge, readiness, reportRecovery, startLoad } from './harness.js'
import { sleep } from '../../src/time.js'
import { waitFor } from '../support/wait.js'

const lifetimeSeconds = 5

// This test kills and restarts Redis, so it needs its own redis-server, never the run's shared one.
describe.runIf(hasRedisServerBinary())('fault: Redis is killed (SIGKILL) and restarted under load', () => {
  const cleanup = useCleanup()

  it('keeps serving valid tokens from memory, refreshes without Redis, and shares grants again after the restart', async () => {
    const redis = cleanup.add(await spawnRedisServer())
    const kivra = cleanup.add(await startKivraStandIn({ lifetimeSeconds }))
    const cluster = cleanup.add(await startBrokerCluster({
      replicas: 2,
      redisUrl: redis.url,
      credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, timeout_ms: 1000, refresh: { ratio: 0.75, margin_seconds: 0, jitter_ratio: 0.05 } }],
      secrets: { 'secret/kivra': { ...kivra.secret } },
      env: faultEnv
    }))
    const standIn = kivra
    const server = redis
    const processes = cluster.processes
    const load = startLoad(processes, 'kivra', { maxDurationMs: 90_000 })
    await waitFor('a first token', () => load.answers.some(answer => answer.status === 200), { timeout: 10_000, interval: 100 })
    await sleep(1000)

    await server.kill()
    const killedAt = Date.now()
    const mintsAtKill = standIn.mints
    // Longer than a token lives: refreshes must go on without the store.
    const readinessDuringOutage = new Set<string>()
    await waitFor('the outage to last 7 s', async () => {
      for (const process of processes) readinessDuringOutage.add(await readiness(process))
      return Date.now() - killedAt >= 7000
    }, { timeout: 15_000, interval: 500 })
    const mintsDuringOutage = standIn.mints - mintsAtKill
    await server.restart()
    const restartedAt = Date.now()

    // Recovery: every process says ready again and hands out a token minted after the restart.
    await waitFor('every process ready again', async () => (await Promise.all(processes.map(readiness))).every(status => status === 'ready'), { timeout: 30_000, interval: 200 })
    const readyAt = Date.now()
    await waitFor('fresh tokens from every process', () => processes.every((_, index) => firstFreshAnswer(load.answers, standIn, restartedAt, index) !== undefined), { timeout: 30_000, interval: 100 })
    const freshAt = Date.now()
    // Shared again: over the next two refresh cycles the processes mint once per cycle between them.
    const mintsAfterRecovery = standIn.requests.length
    await sleep(2 * lifetimeSeconds * 1000)
    const answers = await load.stop()
    const mintTimes = standIn.requests.slice(mintsAfterRecovery).filter(request => request.endpoint === 'mint').map(request => request.at)

    const verdict = judge(answers, standIn)
    const first = firstFreshAnswer(answers, standIn, restartedAt) as NonNullable<ReturnType<typeof firstFreshAnswer>>
    reportRecovery({
      fault: 'redis-kill-restart',
      recoveryMs: readyAt - restartedAt,
      measuredAs: 'redis-server restarted → every process reports ready',
      requests: verdict.total,
      ok: verdict.ok,
      unavailable503: verdict.unavailable,
      mints: standIn.mints,
      details: {
        outageMs: restartedAt - killedAt,
        lifetimeSeconds,
        mintsDuringOutage,
        readinessDuringOutage: [...readinessDuringOutage],
        firstFreshAnswerAfterRestartMs: first.receivedAt - restartedAt,
        allProcessesFreshAfterRestartMs: freshAt - restartedAt,
        mintGapsAfterRecoveryMs: mintTimes.slice(1).map((at, i) => at - (mintTimes[i] as number))
      }
    })

    expect(mintsDuringOutage, 'refreshes went on while Redis was down').toBeGreaterThan(0)
    expect(readinessDuringOutage.has('degraded'), 'readiness said degraded during the outage').toBe(true)
    expect(describeProblems(verdict)).toBe('')
    expect(verdict.badErrors).toEqual([])
    expect(verdict.expired).toEqual([])
    expect(verdict.belowMinTtl).toEqual([])
    expect(verdict.overstated.map(answer => answer.overstatedMs)).toEqual([])
    expect(mintTimes.length, 'refreshes go on after recovery').toBeGreaterThanOrEqual(2)
    // One mint per cycle across both processes: two mints of one cycle would be milliseconds apart.
    for (let i = 1; i < mintTimes.length; i++) expect((mintTimes[i] as number) - (mintTimes[i - 1] as number)).toBeGreaterThan(0.25 * lifetimeSeconds * 1000)
    expect(processes.every(process => process.child.exitCode === null)).toBe(true)
  }, 90_000)
})
