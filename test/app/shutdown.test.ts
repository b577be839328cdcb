import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { fetchToken, startBrokerCluster, type BrokerCluster } from '../support/cluster.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn } from '../support/providers/index.js'
import { testRedisUrl } from '../support/redis.js'
import { sleep } from '../../src/time.js'

describe('graceful shutdown (SIGTERM)', () => {
  const cleanup = useCleanup()

  it('lets the in-flight request finish, releases its lease and exits 0', async () => {
    const kivra = cleanup.add(await startKivraStandIn())
    // The warm-up mint at start hangs for 2 s: SIGTERM arrives while the process holds the lease.
    kivra.setFault({ kind: 'latency', ms: 2000 }, { times: 1 })
    const cluster = cleanup.add(await startBrokerCluster({
      replicas: 1,
      redisUrl: testRedisUrl(),
      credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url }],
      secrets: { 'secret/kivra': { ...kivra.secret } }
    }))
    const [broker] = cluster.processes as [NonNullable<BrokerCluster['processes'][0]>]
    const redis = cleanup.add(new Redis(testRedisUrl()))
    const leaseKeys = async (): Promise<string[]> => (await redis.keys(`${cluster.prefix}*`)).filter(key => key.endsWith(':lease'))
    expect(await leaseKeys()).toHaveLength(1)

    const inFlight = fetchToken(broker, 'kivra', 60)
    await sleep(300)
    broker.child.kill('SIGTERM')
    const answer = await inFlight
    expect(answer.status).toBe(200)
    expect(kivra.isTokenValid(answer.token as string)).toBe(true)

    const exit = await broker.exited
    expect(exit.code).toBe(0)
    expect(await leaseKeys()).toEqual([])
  }, 30_000)
})
