/**
 * The failover scenario both Redis topologies run: three broker processes under steady token load, the
 * master that serves the credential's grant killed (SIGKILL) shortly before a refresh falls due, the
 * topology promotes a replica, the processes find it by themselves. Checked as a caller would see it
 * (harness.ts judge), plus the mints: at most one per process while Redis fails over, one per refresh
 * cycle for all of them after. Figures go to bench/results/faults.json.
 */
import { expect } from 'vitest'
import { createGrantCipher } from '../../src/store/encryption.js'
import { createRedisGrantStore } from '../../src/store/redis-store.js'
import { createLogger } from '../../src/observability/logger.js'
import { startBrokerCluster, type BrokerCluster } from '../support/cluster.js'
import { startKivraStandIn, type KivraStandIn } from '../support/providers/index.js'
import type { TestTopology, TopologyProcess } from '../support/redis-topology.js'
import { describeProblems, faultEnv, judge, readiness, reportRecovery, startLoad, type Load } from './harness.js'
import { waitFor } from '../support/wait.js'

/** 20 s tokens refreshed at half their life: a cycle (10 s) is longer than a failover takes here. */
const lifetimeSeconds = 20
const refreshRatio = 0.5
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, Math.max(0, ms))) }

/** When each process logged "grant refreshed" (it minted), from its JSON log. */
function mintLog (cluster: BrokerCluster): number[][] {
  return cluster.processes.map(process => process.stdout
    .filter(line => line.includes('"grant refreshed"'))
    .map(line => new Date((JSON.parse(line) as { time: string | number }).time).getTime()))
}

export async function expectFailoverUnderLoad (topology: TestTopology, fault: 'redis-sentinel-failover' | 'redis-cluster-failover'): Promise<void> {
  let kivra: KivraStandIn | undefined
  let cluster: BrokerCluster | undefined
  let load: Load | undefined
  let killed: TopologyProcess | undefined
  try {
    kivra = await startKivraStandIn({ lifetimeSeconds })
    const standIn = kivra
    cluster = await startBrokerCluster({
      replicas: 3,
      topology,
      credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, timeout_ms: 2000, refresh: { ratio: refreshRatio, margin_seconds: 0, jitter_ratio: 0 } }],
      secrets: { 'secret/kivra': { ...kivra.secret } },
      // info: each mint is logged ("grant refreshed"), so mints can be told apart per process.
      env: { ...faultEnv, LOG_LEVEL: 'info' }
    })
    const brokers = cluster
    const processes = cluster.processes
    load = startLoad(processes, 'kivra', { maxDurationMs: 150_000 })
    const running = load
    await waitFor('a first token', () => running.answers.some(answer => answer.status === 200), { timeout: 15_000 })
    const firstMintAt = standIn.requests.find(request => request.endpoint === 'mint')?.at ?? Date.now()
    let grantRedisKey = ''
    await waitFor('the grant in Redis', async () => {
      grantRedisKey = (await topology.findKeys(`${brokers.prefix}:*:grant`))[0] ?? ''
      return grantRedisKey !== ''
    }, { timeout: 5000 })
    const grantKey = /\{(.+)\}/.exec(grantRedisKey)?.[1] as string

    // Kill the master 1.5 s before the refresh is due, so it falls due while Redis fails over (noticing
    // a dead master alone takes the topology 2 s here).
    const dueAt = firstMintAt + refreshRatio * lifetimeSeconds * 1000
    await sleep(dueAt - 1500 - Date.now())
    const master = topology.topology === 'cluster' ? await topology.masterOf(grantRedisKey) : await topology.master()
    await master.kill()
    killed = master
    const killedAt = Date.now()
    let promotedAt: number | undefined
    const promotion = (topology.topology === 'cluster' ? topology.waitForNewMaster(grantRedisKey, master, 60_000) : topology.waitForNewMaster(master, 60_000))
      .then(() => { promotedAt = Date.now() })
    const seen = processes.map(() => new Set<string>())
    await waitFor('every process ready after the failover', async () => {
      const states = await Promise.all(processes.map(readiness))
      states.forEach((state, index) => seen[index]?.add(state))
      return promotedAt !== undefined && states.every(state => state === 'ready')
    }, { timeout: 60_000, interval: 250 })
    await promotion
    const readyAt = Date.now()

    // Two more refresh cycles, sharing the store again.
    await sleep(2 * refreshRatio * lifetimeSeconds * 1000 + 1000)
    const answers = await running.stop()
    const verdict = judge(answers, standIn)
    const mints = standIn.requests.filter(request => request.endpoint === 'mint').map(request => request.at)
    const duringFailover = mints.filter(at => at >= killedAt && at <= readyAt)
    const afterRecovery = mints.filter(at => at > readyAt)
    const perProcess = mintLog(brokers).map(times => times.filter(at => at >= killedAt && at <= readyAt).length)

    // The store the processes share holds the newest token: they write to the promoted master.
    const log = createLogger('silent')
    const reader = createRedisGrantStore({ connection: topology.connection, keyPrefix: brokers.prefix, cipher: createGrantCipher(brokers.env.TOKEN_ENCRYPTION_KEY as string, { log }), log })
    let stored: string | undefined
    try {
      await reader.ready(10_000)
      stored = (await reader.get(grantKey))?.grant.accessToken
    } finally {
      await reader.close()
    }
    const newest = answers.filter(answer => answer.status === 200).sort((a, b) => a.receivedAt - b.receivedAt).at(-1)?.token

    reportRecovery({
      fault,
      recoveryMs: readyAt - killedAt,
      measuredAs: 'master SIGKILL → every process reports ready',
      requests: verdict.total,
      ok: verdict.ok,
      unavailable503: verdict.unavailable,
      mints: standIn.mints,
      details: {
        promotedAfterMs: (promotedAt as number) - killedAt,
        readyAfterPromotionMs: readyAt - (promotedAt as number),
        mintsDuringFailover: duringFailover.length,
        mintsPerProcessDuringFailover: perProcess,
        mintsAfterRecovery: afterRecovery.length,
        mintGapsAfterRecoveryMs: afterRecovery.slice(1).map((at, i) => at - (afterRecovery[i] as number)),
        readinessSeen: seen.map(states => [...states]),
        lifetimeSeconds
      }
    })

    expect(describeProblems(verdict)).toBe('')
    expect(verdict.badErrors).toEqual([])
    expect(verdict.unknownTokens).toEqual([])
    expect(verdict.expired).toEqual([])
    expect(verdict.belowMinTtl).toEqual([])
    expect(verdict.overstated.map(answer => answer.overstatedMs)).toEqual([])
    expect(seen.every(states => states.has('degraded')), `every process said degraded meanwhile: ${JSON.stringify(seen.map(states => [...states]))}`).toBe(true)
    // The refresh fell due during the failover: each process minted on its own, once at most.
    expect(duringFailover.length, 'the refresh fell due during the failover').toBeGreaterThan(0)
    expect(perProcess.every(count => count <= 1), `mints per process during the failover: ${perProcess.join(', ')}`).toBe(true)
    expect(duringFailover.length).toBeLessThanOrEqual(processes.length)
    // After it, one mint per cycle for all three: two in one cycle would be milliseconds apart.
    expect(afterRecovery.length, 'refreshes go on after the failover').toBeGreaterThanOrEqual(1)
    for (let i = 1; i < afterRecovery.length; i++) expect((afterRecovery[i] as number) - (afterRecovery[i - 1] as number)).toBeGreaterThan(0.25 * lifetimeSeconds * 1000)
    expect(stored, 'the shared store holds the newest token').toBe(newest)
    expect(processes.every(process => process.child.exitCode === null), 'no process restarted').toBe(true)
  } finally {
    await load?.stop()
    await cluster?.close()
    await kivra?.close()
    if (killed !== undefined) await topology.rejoin(killed)
  }
}
