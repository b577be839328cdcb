import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { grantScripts } from '../../src/store/redis-scripts.js'
import type { Lease } from '../../src/store/types.js'
import { startRedisCluster, topologyTestsCanRun, type TestCluster, type TopologyProcess } from '../support/redis-topology.js'
import { describeGrantStoreContract } from '../store/grant-store.contract.js'
import { makeGrant, randomGrantKey, recordGrants } from '../store/helpers.js'
import { waitFor } from '../support/wait.js'
import { createRedisWorld, type RedisWorld } from '../store/redis-world.js'
import { describeAppOnTopology, describeRateLimitCounts, measure, storeKey } from './topology-checks.js'

const sha1 = (text: string): string => createHash('sha1').update(text).digest('hex')

describe.runIf(topologyTestsCanRun())('Redis Cluster: 3 masters with a replica each, ACL user', () => {
  let cluster: TestCluster
  beforeAll(async () => { cluster = await startRedisCluster() }, 90_000)
  afterAll(async () => { await cluster?.close() })

  describeGrantStoreContract('redis cluster', async () => await createRedisWorld({ topology: cluster }))

  describeRateLimitCounts(() => cluster, async (counterKey, callers) => {
    // Counters on different masters cannot share one pipeline: make sure these callers' are spread.
    const masters = new Set(await Promise.all(callers.map(async caller => (await cluster.masterOf(counterKey(caller))).port)))
    return masters.size >= 2
  })

  describe('slots', () => {
    let world: RedisWorld | undefined
    afterEach(async () => { await world?.close() })

    it('runs every script with all the keys it touches in the slot of one grant key, on that slot\'s master', async () => {
      const opened = await createRedisWorld({ topology: cluster })
      world = opened
      // Grant keys on every master, so each script runs on each of them.
      const keys: string[] = []
      const mastersSeen = new Set<number>()
      while (mastersSeen.size < 3 || keys.length < 6) {
        const key = randomGrantKey()
        const master = (await cluster.masterOf(storeKey(opened.prefix, key, 'grant'))).port
        if (mastersSeen.has(master) && keys.length >= 6) continue
        mastersSeen.add(master)
        keys.push(key)
      }
      const seen: Array<{ port: number, args: string[], source: string }> = []
      const monitors = await Promise.all((await cluster.masters()).map(async port => {
        const monitor = await cluster.client(port).monitor()
        monitor.on('monitor', (_time: string, args: string[], source: string) => { seen.push({ port, args, source }) })
        return monitor
      }))
      try {
        const store = await opened.open()
        for (const key of keys) {
          const lease = await store.acquireLease(key, 10_000) as Lease
          expect(await store.renewLease(lease, 10_000)).toBe(true)
          expect(await store.putGrant(lease, makeGrant())).toBe(true)
          expect(await store.get(key)).not.toBeNull()
          expect(await store.leaseRemainingMs(key)).toBeGreaterThan(0)
          expect(await store.deleteGrant(lease)).toBe(true)
          await store.releaseLease(lease, { announce: true })
        }
        const last = storeKey(opened.prefix, keys.at(-1) as string, 'lease')
        await waitFor('MONITOR showed the last release', () => seen.some(entry => entry.source === 'lua' && entry.args[0] === 'DEL' && entry.args[1] === last), { timeout: 5000, throughErrors: true })
      } finally {
        for (const monitor of monitors) monitor.disconnect()
      }

      const ours = seen.filter(entry => entry.args.some(arg => arg.startsWith(`${opened.prefix}:`)))
      // EVALSHA names the script by its SHA1; EVAL (ioredis' fallback after NOSCRIPT, on a new master)
      // by its body, which MONITOR shows with newlines escaped.
      const scriptNames = new Map(Object.entries(grantScripts).flatMap(([name, script]) => [[sha1(script.lua), name], [script.lua.replaceAll('\n', '\\n'), name]]))
      const invocations = ours.filter(entry => ['evalsha', 'eval'].includes((entry.args[0] ?? '').toLowerCase())).map(entry => {
        const script = entry.args[1] as string
        const keyCount = Number(entry.args[2])
        return { ...entry, name: scriptNames.get(script), keys: entry.args.slice(3, 3 + keyCount) }
      })
      // Every script the store has was seen, and no other.
      expect(invocations.filter(invocation => invocation.name === undefined).map(invocation => invocation.args.slice(0, 2))).toEqual([])
      expect([...new Set(invocations.map(invocation => invocation.name))].sort()).toEqual(Object.keys(grantScripts).sort())

      const node = cluster.client((await cluster.masters())[0] as number)
      const slotOf = async (key: string): Promise<number> => Number(await node.call('CLUSTER', 'KEYSLOT', key))
      const declared = new Set<string>()
      for (const invocation of invocations) {
        const slots = new Set(await Promise.all(invocation.keys.map(slotOf)))
        expect(slots.size, `${invocation.name} keys ${invocation.keys.join(' ')}`).toBe(1)
        expect((await cluster.masterOf(invocation.keys[0] as string)).port).toBe(invocation.port)
        for (const key of invocation.keys) declared.add(`${invocation.port} ${key}`)
      }
      // Inside the scripts (MONITOR shows their calls as "lua"): every key of every command, as Redis itself
      // names them (COMMAND GETKEYS), is one the script declared, so it is in the slot just checked.
      const inner = ours.filter(entry => entry.source === 'lua')
      expect(inner.length).toBeGreaterThan(invocations.length)
      for (const call of inner) {
        const touched = await (node.call('COMMAND', 'GETKEYS', ...call.args) as Promise<string[]>).catch(() => [])
        for (const key of touched) expect(declared.has(`${call.port} ${key}`), `${call.args.join(' ')} touches an undeclared key`).toBe(true)
      }
      // The reads outside scripts (MULTI GET PTTL, PTTL) touch one grant key's keys per call as well.
      for (const call of ours.filter(entry => entry.source !== 'lua' && !['evalsha', 'eval'].includes((entry.args[0] ?? '').toLowerCase()))) {
        const touched = await (node.call('COMMAND', 'GETKEYS', ...call.args) as Promise<string[]>).catch(() => [])
        expect(new Set(await Promise.all(touched.map(slotOf))).size).toBeLessThanOrEqual(1)
      }
    })
  })

  describeAppOnTopology(() => cluster)

  describe('failover', () => {
    let world: RedisWorld | undefined
    let killed: TopologyProcess | undefined
    afterEach(async () => {
      if (killed !== undefined) await cluster.rejoin(killed)
      killed = undefined
      await world?.close()
      world = undefined
    })

    it('fails fast while the master of a grant\'s slot is down, then serves the grant from the promoted replica', async () => {
      const opened = await createRedisWorld({ topology: cluster })
      world = opened
      const store = await opened.open()
      const key = randomGrantKey()
      const grantKey = storeKey(opened.prefix, key, 'grant')
      const lease = await store.acquireLease(key, 60_000) as Lease
      const grant = makeGrant()
      expect(await store.putGrant(lease, grant)).toBe(true)
      const master = await cluster.masterOf(grantKey)
      const replica = cluster.client((await cluster.replicaOf(grantKey)).port)
      await replica.call('READONLY')
      await waitFor('the replica has the grant', async () => await replica.exists(grantKey) === 1, { timeout: 5000, throughErrors: true })

      await master.kill()
      killed = master
      const killedAt = Date.now()
      const failed = await measure(store.get(key))
      expect(failed.error, 'a read of the dead slot fails').toMatchObject({ name: 'StoreError', kind: 'unavailable' })
      expect(failed.ms, 'and fails fast').toBeLessThan(1500)
      await waitFor('health says down', async () => (await store.health()).state === 'down', { timeout: 5000, throughErrors: true })

      const promoted = await cluster.waitForNewMaster(grantKey, master)
      const promotedAt = Date.now()
      await waitFor('the promoted replica serves the grant', async () => (await store.get(key))?.grant.accessToken === grant.accessToken, { timeout: 20_000, throughErrors: true })
      const servedAt = Date.now()
      await waitFor('health says up again', async () => (await store.health()).state === 'up', { timeout: 20_000, throughErrors: true })
      const upAt = Date.now()
      expect((await cluster.masterOf(grantKey)).port).toBe(promoted.port)
      // The lease survived with the data: nobody else can take it; its holder still writes.
      expect(await store.acquireLease(key, 10_000)).toBeNull()
      const next = makeGrant()
      expect(await store.putGrant(lease, next)).toBe(true)
      expect((await store.get(key))?.grant).toEqual(next)
      process.stdout.write(`cluster-failover store: promoted ${promotedAt - killedAt} ms, grant served ${servedAt - killedAt} ms, health up ${upAt - killedAt} ms after the kill\n`)
    }, 60_000)

    it('keeps delivering grant notices after the node its subscriber listens on fails over', async () => {
      const opened = await createRedisWorld({ topology: cluster })
      world = opened
      const listener = await opened.open()
      // The node its subscriber sits on is the one with this store's probe channel (PUBSUB is per node).
      const subscriberNode = async (): Promise<TopologyProcess> => {
        for (const node of cluster.nodes.filter(candidate => candidate.alive())) {
          const channels = await cluster.client(node.port).pubsub('CHANNELS', `${opened.prefix}:grants:probe:*`) as string[]
          if (channels.length > 0) return node
        }
        throw new Error('no node has the subscriber')
      }
      let node = await subscriberNode()
      const admin = (process: TopologyProcess): Redis => cluster.client(process.port)
      if ((await admin(node).info('replication')).includes('role:slave')) {
        // Make it a master first (a graceful failover, the subscription stays), so killing it is a failover.
        await admin(node).call('CLUSTER', 'FAILOVER')
        await waitFor('the subscriber\'s node is a master', async () => (await admin(node).info('replication')).includes('role:master'), { timeout: 15_000, throughErrors: true })
        await cluster.waitUntilHealthy()
        node = await subscriberNode()
      }
      const writer = await opened.open()
      const seen = recordGrants(listener)
      const before = randomGrantKey()
      const first = await writer.acquireLease(before, 10_000) as Lease
      expect(await writer.putGrant(first, makeGrant())).toBe(true)
      await waitFor('a notice before the failover', () => seen.keys.includes(before), { timeout: 5000, throughErrors: true })

      // A grant key served by the master that is about to die, for the write after the failover.
      let after = randomGrantKey()
      while ((await cluster.masterOf(storeKey(opened.prefix, after, 'grant'))).port !== node.port) after = randomGrantKey()
      await node.kill()
      killed = node
      const killedAt = Date.now()
      await cluster.waitForNewMaster(storeKey(opened.prefix, after, 'grant'), node)
      await waitFor('a write to the promoted master', async () => {
        const lease = await writer.acquireLease(after, 10_000)
        return lease !== null && await writer.putGrant(lease, makeGrant())
      }, { timeout: 20_000, interval: 100, throughErrors: true })
      await waitFor('the listener hears of it', () => seen.keys.includes(after), { timeout: 15_000, throughErrors: true })
      const heardAt = Date.now()
      await waitFor('the listener says up', async () => (await listener.health()).state === 'up', { timeout: 20_000, throughErrors: true })
      expect((await subscriberNode()).port).not.toBe(node.port)
      seen.stop()
      process.stdout.write(`cluster-failover subscriber: notice after the failover heard ${heardAt - killedAt} ms after the kill\n`)
    }, 60_000)
  })
})
