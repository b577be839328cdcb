import type { Logger } from 'pino'
import type { Config } from '../config.js'
import { createGrantCipher } from './encryption.js'
import { createMemoryGrantStore, type MemoryGrantStore } from './memory-store.js'
import { describeRedis } from './redis-client.js'
import { createRedisGrantStore, type RedisGrantStore } from './redis-store.js'
import { StoreError } from '../errors.js'

export { createGrantCipher, parseEncryptionKeySpec, keyId, type GrantCipher, type GrantEnvelope, type EncryptionKey } from './encryption.js'
export { createMemoryGrantStore, type MemoryGrantStore, type MemoryGrantStoreDeps } from './memory-store.js'
export { createRedisGrantStore, type RedisGrantStore, type RedisGrantStoreOptions } from './redis-store.js'
export { createRedisClient, describeRedis, type RedisClient, type RedisClientOptions, type RedisConnectionConfig } from './redis-client.js'
export type { GrantStore, Lease, StoredGrant, StoreHealth } from './types.js'

export interface GrantStoreDeps {
  log: Logger
  now?: (() => number) | undefined
  /**
   * TOKEN_ENCRYPTION_KEY as a key list, for when `config.encryptionKey` is a "vault:" reference that the
   * caller has resolved. Defaults to `config.encryptionKey`.
   */
  encryptionKey?: string | undefined
}

/**
 * The grant store the configuration asks for: Redis when REDIS_URL, REDIS_SENTINELS or
 * REDIS_CLUSTER_NODES is set (grants sealed with TOKEN_ENCRYPTION_KEY), else the embedded in-memory
 * store, which serves one replica only and says so loudly. Throws a StoreError ('invalid') when Redis is
 * configured without a usable key.
 */
export function createGrantStore (
  config: Pick<Config, 'redis' | 'encryptionKey'>,
  deps: GrantStoreDeps
): RedisGrantStore | MemoryGrantStore {
  const { log } = deps
  if (config.redis === undefined) {
    log.warn({ store: 'memory' }, 'no REDIS_URL: grants are kept in process memory; run a single replica only')
    return createMemoryGrantStore({ now: deps.now, log })
  }
  const keySpec = deps.encryptionKey ?? config.encryptionKey
  if (keySpec === undefined) {
    // Replicas must share the key to read each other's grants; a per-process key would break that.
    throw new StoreError('invalid', 'TOKEN_ENCRYPTION_KEY is required with Redis')
  }
  const { keyPrefix, ...connection } = config.redis
  log.info({ store: 'redis', keyPrefix, ...describeRedis(connection) }, 'grants are shared through redis')
  return createRedisGrantStore({
    connection,
    keyPrefix,
    cipher: createGrantCipher(keySpec, { log }),
    log,
    now: deps.now
  })
}
