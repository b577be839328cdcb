/**
 * Mint amplification: R broker processes (what `npm start` runs) × C concurrent callers over N refresh
 * cycles of a short-lived token, against a provider stand-in that counts mints. Ideal: 1.00 mint per
 * cycle however many replicas and callers there are. Writes bench/results/amplification.json.
 */
import { writeFileSync } from 'node:fs'
import { startBrokerCluster, loadTokens } from '../test/support/cluster.js'
import { startKivraStandIn } from '../test/support/providers/index.js'
import { startRedisCluster, startRedisSentinel } from '../test/support/redis-topology.js'
import { benchRedis } from './redis.js'

export interface AmplificationResult {
  bench: 'amplification'
  /** One node (REDIS_URL or a spawned redis-server), or a Sentinel group or Cluster the bench starts. */
  topology: 'single' | 'sentinel' | 'cluster'
  replicas: number
  callers: number
  lifetimeSeconds: number
  durationMs: number
  requests: number
  errors: number
  expiredServed: number
  mints: number
  cycles: number
  mintsPerCycle: number
  goal: number
}

export async function runAmplification (options: { replicas?: number, callers?: number, cycles?: number, lifetimeSeconds?: number, topology?: AmplificationResult['topology'] } = {}): Promise<AmplificationResult> {
  const topologyKind = options.topology ?? 'single'
  const replicas = options.replicas ?? 3
  const callers = options.callers ?? 200
  const lifetimeSeconds = options.lifetimeSeconds ?? 4
  const cycles = options.cycles ?? 6
  const refreshEveryMs = 0.5 * lifetimeSeconds * 1000
  const durationMs = Math.ceil(cycles * refreshEveryMs + 500)
  const topology = topologyKind === 'sentinel' ? await startRedisSentinel() : topologyKind === 'cluster' ? await startRedisCluster() : undefined
  const redis = topology === undefined ? await benchRedis() : { url: undefined, stop: topology.close }
  const kivra = await startKivraStandIn({ lifetimeSeconds })
  const cluster = await startBrokerCluster({
    replicas,
    ...(topology === undefined ? { redisUrl: redis.url } : { topology }),
    credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, refresh: { ratio: 0.5, margin_seconds: 0, jitter_ratio: 0 } }],
    secrets: { 'secret/kivra': { ...kivra.secret } }
  })
  try {
    const answers = await loadTokens(cluster.processes, 'kivra', { concurrency: callers, durationMs, minTtl: 0 })
    const mintTimes = kivra.requests.filter(request => request.endpoint === 'mint').map(request => request.at).sort((a, b) => a - b)
    // A cycle is a group of mints closer together than a quarter of the lifetime: two replicas minting
    // for the same cycle land in one group and push mints per cycle above 1.
    let observedCycles = mintTimes.length > 0 ? 1 : 0
    for (let i = 1; i < mintTimes.length; i++) if ((mintTimes[i] as number) - (mintTimes[i - 1] as number) > 0.25 * lifetimeSeconds * 1000) observedCycles += 1
    const expiredServed = answers.filter(answer => answer.status === 200 && (kivra.tokenInfo(answer.token as string)?.expiresAt ?? 0) <= answer.receivedAt).length
    return {
      bench: 'amplification',
      topology: topologyKind,
      replicas,
      callers,
      lifetimeSeconds,
      durationMs,
      requests: answers.length,
      errors: answers.filter(answer => answer.status !== 200).length,
      expiredServed,
      mints: kivra.mints,
      cycles: observedCycles,
      mintsPerCycle: observedCycles === 0 ? 0 : Number((kivra.mints / observedCycles).toFixed(2)),
      goal: 1
    }
  } finally {
    await cluster.close()
    await kivra.close()
    await redis.stop()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runAmplification()
  writeFileSync(new URL('results/amplification.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`)
  console.log(JSON.stringify(result, null, 2))
}
