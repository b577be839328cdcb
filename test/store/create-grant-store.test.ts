import { describe, expect, it } from 'vitest'
import type { RedisConfig } from '../../src/config.js'
import { createGrantStore, type Lease } from '../../src/store/index.js'
import { useCleanup } from '../support/fixtures.js'
import { deleteKeys, testRedisUrl, uniquePrefix } from '../support/redis.js'
import { captureLogs } from '../support/logs.js'
import { makeGrant, randomGrantKey, randomKey } from './helpers.js'

/** Config.redis for the run's Redis, as loadConfig builds it from REDIS_URL. */
function singleNode (keyPrefix: string): RedisConfig {
  return { topology: 'single', url: testRedisUrl(), keyPrefix, username: undefined, password: undefined, tls: undefined }
}

describe('createGrantStore', () => {
  const cleanup = useCleanup()
  /** A fresh key prefix on the run's Redis, deleted after the test. */
  const ownPrefix = (): string => {
    const prefix = uniquePrefix('factory')
    cleanup.defer(async () => { await deleteKeys(testRedisUrl(), prefix) })
    return prefix
  }

  it('uses process memory without REDIS_URL, and says loudly that it is single-replica', async () => {
    const logs = captureLogs()
    const store = cleanup.add(createGrantStore({ redis: undefined, encryptionKey: undefined }, { log: logs.log }))
    expect(store.kind).toBe('memory')
    expect(logs.messages()).toEqual(['no REDIS_URL: grants are kept in process memory; run a single replica only'])
    expect(JSON.parse(logs.lines[0] as string)).toMatchObject({ level: 40 })
  })

  it('uses Redis with REDIS_URL and REDIS_KEY_PREFIX, sealing with TOKEN_ENCRYPTION_KEY', async () => {
    const prefix = ownPrefix()
    const encryptionKey = randomKey()
    const config = { redis: singleNode(prefix), encryptionKey }
    const writer = cleanup.add(createGrantStore(config, { log: captureLogs().log }))
    const reader = cleanup.add(createGrantStore(config, { log: captureLogs().log }))
    expect(writer.kind).toBe('redis')
    const key = randomGrantKey()
    const lease = await writer.acquireLease(key, 10_000) as Lease
    const grant = makeGrant()
    expect(await writer.putGrant(lease, grant)).toBe(true)
    expect((await reader.get(key))?.grant).toEqual(grant)
  })

  it('uses the resolved key list when TOKEN_ENCRYPTION_KEY is a Vault reference', async () => {
    const prefix = ownPrefix()
    const config = { redis: singleNode(prefix), encryptionKey: 'vault:secret/broker#token_key' }
    await expect(async () => { cleanup.add(createGrantStore(config, { log: captureLogs().log })) })
      .rejects.toMatchObject({ name: 'StoreError', kind: 'invalid' })
    const store = cleanup.add(createGrantStore(config, { log: captureLogs().log, encryptionKey: `vault-v3:${randomKey()}` }))
    const key = randomGrantKey()
    const lease = await store.acquireLease(key, 10_000) as Lease
    expect(await store.putGrant(lease, makeGrant())).toBe(true)
    expect(await store.get(key)).not.toBeNull()
  })

  it('refuses Redis without an encryption key', () => {
    expect(() => createGrantStore({ redis: singleNode('x'), encryptionKey: undefined }, { log: captureLogs().log }))
      .toThrow(expect.objectContaining({ name: 'StoreError', kind: 'invalid' }))
  })
})
