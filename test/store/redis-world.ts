import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { createGrantCipher } from '../../src/store/encryption.js'
import { createRedisGrantStore, type RedisGrantStore } from '../../src/store/redis-store.js'
import { deleteKeys, testRedisUrl, uniquePrefix } from '../support/redis.js'
import type { StoreWorld } from './grant-store.contract.js'
import { captureLogs } from '../support/logs.js'
import { randomKey } from './helpers.js'

export interface RedisWorld extends StoreWorld {
  readonly url: string
  readonly prefix: string
  /** The shared TOKEN_ENCRYPTION_KEY of open(). */
  readonly keySpec: string
  /** A replica with its own key spec, logger or Redis URL (e.g. through a proxy); ready when it resolves. */
  openWith: (options: { keySpec?: string, log?: Logger, url?: string, ready?: boolean, commandTimeoutMs?: number }) => Promise<RedisGrantStore>
  /** A plain ioredis client on the same Redis, for looking at raw keys. */
  raw: () => Redis
}

/**
 * A unique key prefix on a real Redis (the run's, unless `url` names a throwaway server); close() closes
 * every store and client it opened and deletes the prefix's keys (skip that for a server being stopped).
 */
export async function createRedisWorld (options: { url?: string, deleteKeys?: boolean } = {}): Promise<RedisWorld> {
  const url = options.url ?? testRedisUrl()
  const prefix = uniquePrefix('store')
  const keySpec = randomKey()
  const stores: RedisGrantStore[] = []
  const rawClients: Redis[] = []
  const openWith: RedisWorld['openWith'] = async (overrides) => {
    const log = overrides.log ?? captureLogs().log
    const store = createRedisGrantStore({
      url: overrides.url ?? url,
      keyPrefix: prefix,
      cipher: createGrantCipher(overrides.keySpec ?? keySpec, { log }),
      log,
      commandTimeoutMs: overrides.commandTimeoutMs
    })
    stores.push(store)
    if (overrides.ready !== false) await store.ready()
    return store
  }
  return {
    url,
    prefix,
    keySpec,
    openWith,
    open: async () => await openWith({}),
    raw: () => {
      const client = new Redis(url, { maxRetriesPerRequest: 1 })
      rawClients.push(client)
      return client
    },
    close: async () => {
      await Promise.all(stores.map(async store => { await store.close() }))
      for (const client of rawClients) client.disconnect()
      if (options.deleteKeys !== false) await deleteKeys(url, prefix)
    }
  }
}
