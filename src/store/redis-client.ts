import type { ConnectionOptions } from 'node:tls'
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { RedisConfig } from '../config.js'
import { backoffDelayMs } from '../time.js'

/** A connection to any of the three topologies; both classes share the command interface. */
export type RedisClient = Redis | Cluster

/** What a connection to Redis needs: the topology and its shared settings, without the key prefix. */
export type RedisConnectionConfig = RedisConfig extends infer C ? C extends unknown ? Omit<C, 'keyPrefix'> : never : never

export interface RedisClientOptions {
  /** CLIENT SETNAME, so an operator can tell the broker's connections apart in CLIENT LIST. */
  connectionName: string
  /** How long one command may take before its caller gets an error. */
  commandTimeoutMs: number
  /** How long opening one connection may take. Default 2000 ms. */
  connectTimeoutMs?: number | undefined
  /**
   * A pub/sub connection. Single node and Sentinel: ioredis does not resubscribe by itself, because the
   * caller resubscribes on every 'ready' and so knows when messages may have been missed. (A Cluster's
   * subscriber connection always resubscribes by itself; see redis-store.ts.)
   */
  subscriber?: boolean | undefined
}

const MAX_RECONNECT_DELAY_MS = 2000
/**
 * How often a Cluster client re-reads the slot map. After a failover the promoted replica owns the slots
 * of the dead master; commands learn it from MOVED, but the health check (which PINGs every master) and
 * the pub/sub connection only from a refresh, so this bounds how long a recovered cluster still looks
 * degraded. One CLUSTER SLOTS per client per second is nothing for a cluster.
 */
const SLOTS_REFRESH_INTERVAL_MS = 1000

/** Reconnect forever: exponential from 100 ms, capped at 2 s, 40 % of it random so replicas do not retry in step. */
export function reconnectDelay (attempt: number): number {
  return Math.round(backoffDelayMs(attempt, undefined, { baseMs: 100, capMs: MAX_RECONNECT_DELAY_MS, jitterRatio: 0.4 }))
}

/**
 * After a failover, a connection may still reach the old master, now a replica (a graceful failover, or a
 * DNS name that moved late): its writes fail with READONLY. Reconnecting finds the current master
 * (through Sentinel, or the name again); the failed command itself is not re-sent.
 */
function reconnectOnReadOnly (err: Error): boolean {
  return err.message.startsWith('READONLY')
}

/**
 * Opens a connection to the configured Redis topology with ioredis' own clients: `Redis` for one node or
 * for a master found through Sentinel (ioredis asks the sentinels, follows failovers and checks the role),
 * `Cluster` for Redis Cluster (ioredis discovers the nodes and the slot map, follows MOVED and failovers).
 * Nothing here finds or elects nodes; it only chooses how the clients behave when Redis is down.
 *
 * Every client fails fast rather than waits: callers of the broker are served from its local cache when
 * Redis is unavailable, so a command is never queued while disconnected (on a Cluster: callers check the
 * status first, see enableOfflineQueue below), never re-sent after a reconnect
 * (it would run long after its caller gave up: a lease nobody knows it holds, a write the caller counted
 * as failed), and a Cluster does not retry a command on another connection while a failover is under
 * way. Connections reconnect by themselves, forever.
 */
export function createRedisClient (config: RedisConnectionConfig, options: RedisClientOptions): RedisClient {
  const connectTimeout = options.connectTimeoutMs ?? 2000
  const tls: ConnectionOptions | undefined = config.tls === undefined ? undefined : (config.tls.ca === undefined ? {} : { ca: config.tls.ca })
  const node: RedisOptions = {
    connectTimeout,
    commandTimeout: options.commandTimeoutMs,
    // A peer that stops answering without closing the socket (a partition) would otherwise keep a dead
    // connection forever; no reply within this time drops it and starts a reconnect.
    socketTimeout: Math.max(3 * options.commandTimeoutMs, 2000),
    // TCP keepalive as a second line for idle connections (the subscriber).
    keepAlive: 10_000,
    connectionName: options.connectionName,
    username: config.username,
    password: config.password,
    ...(tls === undefined ? {} : { tls }),
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    keyPrefix: '',
    reconnectOnError: reconnectOnReadOnly
  }

  if (config.topology === 'cluster') {
    const clusterOptions: ClusterOptions = {
      redisOptions: node,
      // Unlike Redis', a Cluster's offline queue setting also decides what happens to a command for a node
      // whose connection is still being opened: ioredis opens them lazily, at the first command, and again
      // after every failover, so with `false` every command arriving meanwhile fails at a healthy cluster
      // (a cold start's concurrent reads would all fail). With `true` such a command waits for that
      // connection, bounded by the node's commandTimeout. A command sent while the whole Cluster is not
      // ready would wait without a bound: callers check `status === 'ready'` first (the grant store's
      // run(), the rate limiter's add()).
      enableOfflineQueue: true,
      enableReadyCheck: true,
      // Writes and reads go to masters: a replica may lag, and a grant read there could be older than
      // the one just written (harmless, but it would cost a mint).
      scaleReads: 'master',
      clusterRetryStrategy: reconnectDelay,
      // No retries of a command during a failover ("Connection is closed", CLUSTERDOWN, TRYAGAIN): the
      // caller gets an error at once and serves from its local cache. MOVED and ASK are still followed
      // (the command did not run), up to the default number of redirections.
      retryDelayOnFailover: 0,
      retryDelayOnClusterDown: 0,
      retryDelayOnTryAgain: 0,
      slotsRefreshTimeout: connectTimeout,
      slotsRefreshInterval: SLOTS_REFRESH_INTERVAL_MS,
      // With TLS, nodes must be reached by the names their certificates carry, not by resolved addresses
      // (ioredis' advice for managed clusters such as ElastiCache).
      ...(tls === undefined ? {} : { dnsLookup: (address, callback) => { callback(null, address) } })
    }
    return new Cluster(config.nodes.map(({ host, port }) => ({ host, port })), clusterOptions)
  }

  const common: RedisOptions = {
    ...node,
    retryStrategy: reconnectDelay,
    enableOfflineQueue: false,
    lazyConnect: false,
    autoResubscribe: options.subscriber !== true
  }
  if (config.topology === 'sentinel') {
    return new Redis({
      ...common,
      name: config.masterName,
      role: 'master',
      sentinels: config.sentinels.map(({ host, port }) => ({ host, port })),
      sentinelPassword: config.sentinelPassword,
      sentinelRetryStrategy: reconnectDelay,
      sentinelCommandTimeout: connectTimeout,
      // Sentinel announces a failover on +switch-master: ioredis then leaves the old master at once
      // instead of waiting for it to fail (it may well stay up, as a replica).
      failoverDetector: true,
      ...(tls === undefined ? {} : { enableTLSForSentinelMode: true, sentinelTLS: tls })
    })
  }
  // One node: what the URL says (credentials, rediss://, a database number, options in its query) applies
  // as written; the settings above fill in the rest (config.ts refuses a credential given both in the URL
  // and in REDIS_USERNAME/REDIS_PASSWORD).
  return new Redis(config.url, common)
}

/** A short description of the topology for logs: never a password or a URL (which may carry one). */
export function describeRedis (config: RedisConnectionConfig): Record<string, unknown> {
  switch (config.topology) {
    case 'single': return { topology: 'single', tls: config.tls !== undefined }
    case 'sentinel': return { topology: 'sentinel', sentinels: config.sentinels.length, master: config.masterName, tls: config.tls !== undefined }
    case 'cluster': return { topology: 'cluster', seedNodes: config.nodes.length, tls: config.tls !== undefined }
  }
}
