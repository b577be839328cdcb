import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { Lease } from '../../src/store/types.js'
import { startRedisSentinel, topologyTestsCanRun, type TestSentinel, type TopologyProcess } from '../support/redis-topology.js'
import { describeGrantStoreContract } from '../store/grant-store.contract.js'
import { makeGrant, randomGrantKey, recordGrants } from '../store/helpers.js'
import { waitFor } from '../support/wait.js'
import { createRedisWorld, type RedisWorld } from '../store/redis-world.js'
import { describeAppOnTopology, describeRateLimitCounts, measure, storeKey } from './topology-checks.js'

describe.runIf(topologyTestsCanRun())('Redis Sentinel: one master, one replica, three sentinels, passwords', () => {
  let sentinel: TestSentinel
  beforeAll(async () => { sentinel = await startRedisSentinel() }, 90_000)
  afterAll(async () => { await sentinel?.close() })

  describeGrantStoreContract('redis sentinel', async () => await createRedisWorld({ topology: sentinel }))

  describeRateLimitCounts(() => sentinel)

  describeAppOnTopology(() => sentinel)

  describe('failover', () => {
    let world: RedisWorld | undefined
    let killed: TopologyProcess | undefined
    afterEach(async () => {
      if (killed !== undefined) await sentinel.rejoin(killed)
      killed = undefined
      await world?.close()
      world = undefined
      await sentinel.waitUntilHealthy()
    })

    it('fails fast while the master is down, reconnects to the promoted replica by itself, and keeps grants and notices', async () => {
      const opened = await createRedisWorld({ topology: sentinel })
      world = opened
      const reader = await opened.open()
      const writer = await opened.open()
      const seen = recordGrants(reader)
      const key = randomGrantKey()
      const lease = await writer.acquireLease(key, 60_000) as Lease
      const grant = makeGrant()
      expect(await writer.putGrant(lease, grant)).toBe(true)
      const master = await sentinel.master()
      const replica = sentinel.nodes.find(node => node !== master) as TopologyProcess
      await waitFor('the replica has the grant', async () => await sentinel.client(replica.port).exists(storeKey(opened.prefix, key, 'grant')) === 1, { timeout: 5000, throughErrors: true })

      await master.kill()
      killed = master
      const killedAt = Date.now()
      const failed = await measure(reader.get(key))
      expect(failed.error, 'a read while the master is down fails').toMatchObject({ name: 'StoreError', kind: 'unavailable' })
      expect(failed.ms, 'and fails fast').toBeLessThan(1500)
      expect((await reader.health()).state).toBe('down')

      const promoted = await sentinel.waitForNewMaster(master)
      const promotedAt = Date.now()
      expect(promoted.port).toBe(replica.port)
      await waitFor('the promoted replica serves the grant', async () => (await reader.get(key))?.grant.accessToken === grant.accessToken, { timeout: 20_000, throughErrors: true })
      const servedAt = Date.now()
      await waitFor('both stores say up again', async () => (await reader.health()).state === 'up' && (await writer.health()).state === 'up', { timeout: 20_000, throughErrors: true })
      const upAt = Date.now()
      // The lease survived with the data; its holder writes to the new master, and the reader hears of it.
      expect(await reader.acquireLease(key, 10_000)).toBeNull()
      const next = makeGrant()
      const noticesBefore = seen.keys.length
      expect(await writer.putGrant(lease, next)).toBe(true)
      await waitFor('the reader hears of the write after the failover', () => seen.keys.slice(noticesBefore).includes(key), { timeout: 5000, throughErrors: true })
      expect((await reader.get(key))?.grant).toEqual(next)
      seen.stop()
      process.stdout.write(`sentinel-failover store: promoted ${promotedAt - killedAt} ms, grant served ${servedAt - killedAt} ms, health up ${upAt - killedAt} ms after the kill\n`)
    }, 60_000)

    it('follows a graceful failover (SENTINEL FAILOVER), where the old master stays up as a replica', async () => {
      const opened = await createRedisWorld({ topology: sentinel })
      world = opened
      const reader = await opened.open()
      const writer = await opened.open()
      const seen = recordGrants(reader)
      // The reader has dealt with the key before (as a replica holding that grant has): each client
      // leaves the old master on its own +switch-master, so the write below may be published while the
      // reader's subscriber is still there. Then it hears of it on resubscribing (it re-reads every key
      // it knows), at the latest when Sentinel makes the old master a replica and drops its clients.
      const key = randomGrantKey()
      expect(await reader.get(key)).toBeNull()
      const oldMaster = await sentinel.master()
      await sentinel.client(sentinel.sentinels[0]?.port as number).call('SENTINEL', 'FAILOVER', sentinel.masterName)
      const promoted = await sentinel.waitForNewMaster(oldMaster)
      expect(oldMaster.alive()).toBe(true)
      // Sentinel tells the old master to replicate the new one only seconds later (about 10 s here); a
      // write that landed on it meanwhile would be lost with its data. ioredis leaves it at once on
      // Sentinel's +switch-master (failoverDetector), so writes reach the new master well before that.
      await waitFor('a write lands on the new master', async () => {
        const lease = await writer.acquireLease(randomGrantKey(), 10_000).catch(() => null)
        if (lease === null || !await writer.putGrant(lease, makeGrant()).catch(() => false)) return false
        return await sentinel.client(promoted.port).exists(storeKey(opened.prefix, lease.key, 'grant')) === 1
      }, { timeout: 3000, interval: 100, throughErrors: true })
      expect((await sentinel.client(oldMaster.port).info('replication')).includes('role:master'), 'the old master is still a master (the test proves nothing otherwise)').toBe(true)
      const lease = await writer.acquireLease(key, 10_000) as Lease
      expect(await writer.putGrant(lease, makeGrant())).toBe(true)
      expect(await sentinel.client(promoted.port).exists(storeKey(opened.prefix, key, 'grant'))).toBe(1)
      await waitFor('the reader hears of it', () => seen.keys.includes(key), { timeout: 20_000, throughErrors: true })
      await waitFor('both stores say up', async () => (await reader.health()).state === 'up' && (await writer.health()).state === 'up', { timeout: 15_000, throughErrors: true })
      seen.stop()
    }, 60_000)
  })
})
