import { Cluster, Redis } from 'ioredis'
import type { Logger } from 'pino'
import { createGrantCipher } from '../../src/store/encryption.js'
import type { RedisConnectionConfig } from '../../src/store/redis-client.js'
import { createRedisGrantStore, type RedisGrantStore } from '../../src/store/redis-store.js'
import { deleteKeys, testRedisUrl, uniquePrefix } from '../support/redis.js'
import type { TestTopology } from '../support/redis-topology.js'
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
  /** A plain ioredis client on the same Redis (a Cluster client on a Cluster), for looking at raw keys. */
  raw: () => Redis | Cluster
}

/**
 * A unique key prefix on a real Redis (the run's, unless `url` names a throwaway server, `topology` a
 * Sentinel group or Cluster of the test file, or `connection` any other); close() closes every store and client it opened and
 * deletes the prefix's keys (skip that for a server being stopped).
 */
export async function createRedisWorld (options: { url?: string, deleteKeys?: boolean, topology?: TestTopology, connection?: RedisConnectionConfig } = {}): Promise<RedisWorld> {
  const { topology } = options
  const connection: RedisConnectionConfig | undefined = options.connection ?? topology?.connection
  const url = options.url ?? (connection === undefined ? testRedisUrl() : '')
  const prefix = uniquePrefix('store')
  const keySpec = randomKey()
  const stores: RedisGrantStore[] = []
  const rawClients: Array<Redis | Cluster> = []
  const openWith: RedisWorld['openWith'] = async (overrides) => {
    const log = overrides.log ?? captureLogs().log
    const store = createRedisGrantStore({
      ...(connection === undefined || overrides.url !== undefined ? { url: overrides.url ?? url } : { connection }),
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
      if (topology === undefined && url === '') throw new Error('raw() needs a url or a topology')
      const client = topology === undefined ? new Redis(url, { maxRetriesPerRequest: 1 }) : rawClient(topology)
      rawClients.push(client)
      return client
    },
    close: async () => {
      await Promise.all(stores.map(async store => { await store.close() }))
      for (const client of rawClients) client.disconnect()
      if (options.deleteKeys === false) return
      if (topology === undefined && url !== '') await deleteKeys(url, prefix)
      else await topology?.deleteKeys(prefix)
    }
  }
}

/** An ioredis client of the topology's kind, without the broker's fail-fast settings: for looking, in tests. */
function rawClient (topology: TestTopology): Redis | Cluster {
  const { connection } = topology
  if (connection.topology === 'cluster') {
    return new Cluster(connection.nodes.map(node => ({ ...node })), { redisOptions: { username: connection.username, password: connection.password } })
  }
  if (connection.topology === 'sentinel') {
    return new Redis({ sentinels: connection.sentinels.map(node => ({ ...node })), name: connection.masterName, sentinelPassword: connection.sentinelPassword, password: connection.password, maxRetriesPerRequest: 1 })
  }
  return new Redis(connection.url, { maxRetriesPerRequest: 1 })
}
