import { readFileSync } from 'node:fs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig, type RedisConfig } from '../../src/config.js'
import type { RedisConnectionConfig } from '../../src/store/redis-client.js'
import type { Lease } from '../../src/store/types.js'
import { startRedisCluster, startRedisSentinel, startTlsRedis, testTls, topologyTestsCanRun, type TestCluster, type TestSentinel, type TestTlsNode } from '../support/redis-topology.js'
import { makeGrant, randomGrantKey, recordGrants } from '../store/helpers.js'
import { captureLogs } from '../support/logs.js'
import { waitFor } from '../support/wait.js'
import { createRedisWorld, type RedisWorld } from '../store/redis-world.js'
import { createGrantCipher } from '../../src/store/encryption.js'
import { createRedisGrantStore, type RedisGrantStore } from '../../src/store/redis-store.js'

/** What every topology must do over TLS: two replicas share a grant, and hear of each other's writes. */
async function shareAGrant (world: RedisWorld): Promise<void> {
  const [writer, reader] = [await world.open(), await world.open()]
  const seen = recordGrants(reader)
  const key = randomGrantKey()
  const lease = await writer.acquireLease(key, 10_000) as Lease
  const grant = makeGrant()
  expect(await writer.putGrant(lease, grant)).toBe(true)
  expect((await reader.get(key))?.grant).toEqual(grant)
  await waitFor('the reader heard of the write', () => seen.keys.includes(key), { timeout: 5000, throughErrors: true })
  expect(await reader.health()).toEqual({ state: 'up' })
  seen.stop()
}

describe.runIf(topologyTestsCanRun())('TLS to Redis (REDIS_TLS, REDIS_CACERT): every topology, the test CA only', () => {
  let node: TestTlsNode
  let sentinel: TestSentinel
  let cluster: TestCluster
  beforeAll(async () => {
    [node, sentinel, cluster] = await Promise.all([startTlsRedis(), startRedisSentinel({ tls: true }), startRedisCluster({ tls: true })])
  }, 120_000)
  afterAll(async () => {
    await Promise.all([node?.close(), sentinel?.close(), cluster?.close()])
  })

  let world: RedisWorld | undefined
  const stores: RedisGrantStore[] = []
  afterEach(async () => {
    await world?.close()
    world = undefined
    for (const store of stores.splice(0)) await store.close()
  })

  /** Config.redis as loadConfig builds it from this environment, without the key prefix. */
  const connectionFrom = (env: Record<string, string>): RedisConnectionConfig => {
    const { keyPrefix: _prefix, ...connection } = loadConfig({ LOG_LEVEL: 'silent', TOKEN_ENCRYPTION_KEY: Buffer.alloc(32, 1).toString('base64'), ...env }).redis as RedisConfig
    return connection
  }

  it('one node: redis:// with REDIS_TLS=true and the CA from REDIS_CACERT', async () => {
    const connection = connectionFrom({ REDIS_URL: `redis://127.0.0.1:${node.port}`, REDIS_PASSWORD: node.password, REDIS_TLS: 'true', REDIS_CACERT: testTls.caFile })
    expect(connection.tls).toEqual({ ca: readFileSync(testTls.caFile, 'utf8') })
    world = await createRedisWorld({ connection, deleteKeys: false })
    await shareAGrant(world)
  })

  it('one node: rediss:// with the CA from REDIS_CACERT', async () => {
    world = await createRedisWorld({ connection: connectionFrom({ REDIS_URL: `rediss://:${node.password}@127.0.0.1:${node.port}`, REDIS_CACERT: testTls.caFile }), deleteKeys: false })
    await shareAGrant(world)
  })

  it('refuses a server whose certificate another CA signed: never ready, health down, and says so once', async () => {
    const logs = captureLogs()
    const store = createRedisGrantStore({ connection: node.connection(readFileSync(testTls.otherCaFile, 'utf8')), keyPrefix: 'tls-refused', cipher: createGrantCipher(Buffer.alloc(32, 2).toString('base64'), { log: logs.log }), log: logs.log })
    stores.push(store)
    await expect(store.ready(2000)).rejects.toMatchObject({ name: 'StoreError', kind: 'unavailable' })
    expect((await store.health()).state).toBe('down')
    const warnings = logs.lines.map(line => JSON.parse(line) as { msg: string, err?: { message?: string } }).filter(line => line.msg === 'redis connection error; reconnecting')
    expect(warnings.length).toBeGreaterThan(0)
    expect(warnings.length).toBeLessThanOrEqual(2)
    expect(JSON.stringify(warnings)).toMatch(/self[- ]signed|unable to verify|certificate/i)
    expect(logs.text()).not.toContain(node.password)
  })

  it('Sentinel: sentinels and data nodes over TLS', async () => {
    world = await createRedisWorld({ topology: sentinel })
    await shareAGrant(world)
  })

  it('Cluster: every node over TLS', async () => {
    world = await createRedisWorld({ topology: cluster })
    await shareAGrant(world)
  })
})
