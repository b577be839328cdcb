/** Connection-level helpers of the Redis grant store: configuration shorthand, Cluster health, closing, error mapping. */
import type { Cluster } from 'ioredis'
import { StoreError } from '../errors.js'
import { withTimeout } from '../time.js'
import type { RedisClient, RedisConnectionConfig } from './redis-client.js'

/** How long a health probe (PING, CLUSTER INFO) may take. */
export const HEALTH_TIMEOUT_MS = 500

export function singleNode (url: string): RedisConnectionConfig {
  return { topology: 'single', url, username: undefined, password: undefined, tls: undefined }
}

/** Redis Cluster has this many hash slots. */
const CLUSTER_SLOTS = 16384

/**
 * Why a Cluster cannot serve every grant right now, or undefined when it can. The client stays ready
 * while one master is down or failing over, so each master of the client's slot map is asked for
 * CLUSTER INFO: a master that does not answer, or one that reports cluster_state other than ok (a
 * master has failed and no replica has taken over yet), means some grants cannot be read or written.
 */
export async function clusterHealth (cluster: Cluster): Promise<string | undefined> {
  const masterKeys = new Set<string>()
  let served = 0
  for (const owners of cluster.slots) {
    const master = owners?.[0]
    if (master === undefined) continue
    served += 1
    masterKeys.add(master)
  }
  if (served < CLUSTER_SLOTS) return 'not every redis cluster slot has a known master'
  const pool = new Map(cluster.nodes('master').map(node => [`${node.options.host ?? ''}:${node.options.port ?? ''}`, node]))
  const answers = await Promise.allSettled([...masterKeys].map(async key => {
    const node = pool.get(key)
    if (node === undefined) throw new Error('not connected')
    return String(await withTimeout(node.call('CLUSTER', 'INFO'), HEALTH_TIMEOUT_MS))
  }))
  const silent = answers.filter(answer => answer.status === 'rejected').length
  if (silent > 0) return `${silent} of ${masterKeys.size} redis cluster masters did not answer`
  if (answers.some(answer => answer.status === 'fulfilled' && !answer.value.includes('cluster_state:ok'))) return 'redis cluster state is not ok (a master is failing over)'
  return undefined
}

/** QUIT lets Redis finish what it has; a connection that cannot say goodbye in time is simply dropped. */
export async function quit (client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'end') return
  try {
    if (client.status === 'ready') await withTimeout(client.quit(), timeoutMs)
  } catch {
    // Closing anyway: the connection is dropped below.
  } finally {
    client.disconnect()
  }
}


/** Maps an ioredis failure to a StoreError with a fixed message; the original stays as `cause` for logs. */
export function toStoreError (err: unknown): StoreError {
  if (err instanceof StoreError) return err
  if (err instanceof Error && err.message === 'Command timed out') return new StoreError('unavailable', 'redis command timed out', { cause: err })
  if (err instanceof Error && err.name === 'ReplyError') return new StoreError('rejected', 'redis refused the command', { cause: err })
  return new StoreError('unavailable', 'redis unavailable', { cause: err })
}
