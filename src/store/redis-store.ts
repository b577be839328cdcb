import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import { z } from 'zod'
import type { GrantCipher } from './encryption.js'
import { notifyListeners, type GrantListener } from './listeners.js'
import type { GrantStore, Lease, StoreHealth } from './types.js'
import { checkGrant, checkGrantKey, checkLeaseTtl, grantTimeToLive, maxSaneLeaseTtl } from './validate.js'
import { parseStored } from './parse-stored.js'
import { StoreError } from '../errors.js'
import { withTimeout } from '../time.js'
import { Cluster } from 'ioredis'
import { clusterHealth, HEALTH_TIMEOUT_MS, quit, singleNode, toStoreError } from './redis-connection.js'
import { grantScripts, type GrantScripts } from './redis-scripts.js'
import { createRedisClient, type RedisClient, type RedisConnectionConfig } from './redis-client.js'

export interface RedisGrantStoreOptions {
  /** One node by redis:// or rediss:// URL: shorthand for `connection: { topology: 'single', url }`. */
  url?: string | undefined
  /** The topology (one node, Sentinel or Cluster) and its credentials and TLS: Config.redis. */
  connection?: RedisConnectionConfig | undefined
  /** Prefix of every key and of the pub/sub channel (REDIS_KEY_PREFIX). */
  keyPrefix: string
  cipher: GrantCipher
  log: Logger
  /** Current time in epoch milliseconds, for grant time-to-live (an injected clock in tests). */
  now?: (() => number) | undefined
  /** How long one command may take before the caller gets a StoreError. Default 1000 ms. */
  commandTimeoutMs?: number | undefined
  /** How long close() waits for QUIT before dropping the connections. Default 1000 ms. */
  closeTimeoutMs?: number | undefined
}

export interface RedisGrantStore extends GrantStore {
  readonly kind: 'redis'
  /**
   * Resolves once both connections are up and the grant channel is subscribed, so no other replica's
   * write can be missed from here on; rejects with a StoreError after `timeoutMs` (default 5000). Startup
   * may await it, but need not: the store connects and reconnects by itself.
   */
  ready: (timeoutMs?: number) => Promise<void>
}

/** The value stored under a grant key: the fence of the writing lease beside the sealed grant. */
const StoredValueSchema = z.object({
  v: z.literal(1),
  fence: z.number().int(),
  sealed: z.unknown()
})

const DEFAULT_COMMAND_TIMEOUT_MS = 1000
/** Cluster: how often the grant channel is proven to deliver, and how long a probe may take. */
const PROBE_INTERVAL_MS = 2000
const PROBE_TIMEOUT_MS = 1000

/** Clock differences below this between the writer of a grant and Redis are ignored (see get). */
const skewToleranceMs = 1000

/**
 * The shared grant store on Redis: one node, a master behind Sentinel, or a Cluster (redis-client.ts).
 * Grants are sealed with `cipher`, bound to their Redis key, and expire with the grant. Leases are
 * `SET NX PX` with a random owner; writes are fenced. The keys of one grant key share a hash tag, so
 * every script stays in one Cluster slot. Every write and delete is published on `<prefix>:grants`,
 * which a second (subscriber) connection listens to.
 *
 * Pub/sub on a Cluster: a plain PUBLISH from inside the scripts, which Redis Cluster forwards to every
 * node, not sharded pub/sub (SPUBLISH). A shard channel must hash to the slot of the script's keys, so
 * sharding would need one channel per grant key, each subscribed by every replica before it may rely on
 * its notices, including for keys it has never seen; publishing after the script instead would break
 * the atomicity of "write, then announce". One notice per grant write (a few per second with 10,000
 * credentials) costs the cluster bus nothing worth saving, and it works on every Redis Cluster version.
 *
 * Callers must fail fast when Redis is down (the broker then serves from its local cache), so commands
 * are never queued while disconnected and each has a timeout; the connections reconnect by themselves.
 */
export function createRedisGrantStore (options: RedisGrantStoreOptions): RedisGrantStore {
  const { keyPrefix, cipher, log } = options
  const now = options.now ?? Date.now
  const commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS
  const closeTimeoutMs = options.closeTimeoutMs ?? 1000
  const channel = `${keyPrefix}:grants`
  const connection = options.connection ?? (options.url === undefined ? undefined : singleNode(options.url))
  if (connection === undefined) throw new StoreError('invalid', 'the Redis grant store needs a url or a connection')

  const redis = createRedisClient(connection, { connectionName: 'credential-broker', commandTimeoutMs })
  for (const [name, script] of Object.entries(grantScripts)) redis.defineCommand(name, script)
  const scripts = redis as unknown as GrantScripts
  // A connection in subscriber mode cannot run other commands, hence a second one. On one node or
  // Sentinel we subscribe on every 'ready' ourselves instead of ioredis' autoResubscribe, to know when
  // messages may have been missed. A Cluster moves its subscriber connection to another node by itself
  // when that node fails, silently: there a probe (below) tells whether notices still arrive.
  const subscriber = createRedisClient(connection, { connectionName: 'credential-broker:sub', commandTimeoutMs, subscriber: true })
  const cluster = connection.topology === 'cluster'

  // Signals any change of connection state to callers waiting in waitFor().
  const state = new EventEmitter()
  state.setMaxListeners(0)
  const listeners = new Set<GrantListener>()
  // Keys this replica has dealt with: re-announced after a resubscribe, since pub/sub does not replay
  // the messages published while the subscriber was disconnected.
  const knownKeys = new Set<string>()
  let everReady = false
  let subscribed = false
  let everSubscribed = false
  // Cluster: a node left the pool, or a probe failed: notices may have been lost since. The next probe
  // that arrives re-announces the known keys.
  let channelSuspect = false
  let closed = false
  let closing: Promise<void> | undefined

  const keysOf = (key: string): { grant: string, lease: string, fence: string } => {
    checkGrantKey(key)
    // One hash tag for all keys of a grant: Cluster places them in one slot, as a script requires.
    const base = `${keyPrefix}:{${key}}`
    return { grant: `${base}:grant`, lease: `${base}:lease`, fence: `${base}:fence` }
  }

  const releaseNow = async (lease: Lease, announce = false): Promise<void> => {
    const keys = keysOf(lease.key)
    await run(async () => await scripts.cbReleaseLease(keys.lease, lease.owner, channel, lease.key, announce ? '1' : '0'))
  }
  /** Leases whose acquire or release did not get an answer; compare-and-deleted when Redis is ready. */
  const orphans = new Map<string, Lease>()
  const orphanLease = (lease: Lease): void => {
    if (closed) return
    orphans.set(lease.owner, lease)
    // A slow Redis (not a lost one), or a Cluster that lost one master (the client stays ready), emits
    // no 'ready' again: retry on a timer as well.
    setTimeout(releaseOrphans, commandTimeoutMs).unref()
  }
  const releaseOrphans = (): void => {
    if (closed || redis.status !== 'ready') return
    for (const lease of orphans.values()) {
      orphans.delete(lease.owner)
      releaseNow(lease, true).catch(() => { orphanLease(lease) })
    }
  }

  const watch = (client: RedisClient, role: 'commands' | 'subscriber'): void => {
    let outage = false
    client.on('ready', () => {
      if (outage) log.info({ connection: role }, 'redis connection restored')
      outage = false
      if (role === 'commands') {
        everReady = true
        releaseOrphans()
      }
      state.emit('change')
    })
    client.on('close', () => {
      if (role === 'subscriber') subscribed = false
      if (!closed && !outage) {
        outage = true
        log.warn({ connection: role }, 'redis connection lost; reconnecting')
      }
      state.emit('change')
    })
    // ioredis emits an error on every failed reconnect attempt: warn once per outage, the rest at debug.
    client.on('error', (err: Error) => {
      if (closed) return
      if (outage) {
        log.debug({ connection: role, err }, 'redis connection error')
        return
      }
      outage = true
      log.warn({ connection: role, err }, 'redis connection error; reconnecting')
    })
    // A Cluster stays ready while one of its masters fails over; ioredis drops the node's connection
    // and finds the new master itself. Say so at debug: readiness reports the degraded state.
    client.on('-node', () => { if (!closed) log.debug({ connection: role }, 'redis cluster node left the connection pool') })
  }
  watch(redis, 'commands')
  watch(subscriber, 'subscriber')

  /** A notice is "<key>" or, for a write, "<key> <fence>" (grant keys hold no whitespace). */
  const deliver = (message: string): void => {
    const [key = '', fenceText] = message.split(' ')
    try {
      checkGrantKey(key)
    } catch {
      return
    }
    const fence = fenceText === undefined || !/^\d+$/.test(fenceText) ? undefined : Number(fenceText)
    knownKeys.add(key)
    notifyListeners(listeners, key, fence, log)
  }

  /** Announces every known key once more: notices may have been published while nobody listened. */
  const reannounce = (why: string): void => {
    log.info({ keys: knownKeys.size, why }, 'grant channel resubscribed; re-announcing known keys')
    for (const key of knownKeys) deliver(key)
  }

  // Cluster only: a channel of this store's own, on the same subscriber connection as the grant channel.
  // A message published there and received here proves that notices reach this replica right now.
  const probeChannel = `${channel}:probe:${randomUUID()}`
  const probes = new Map<string, () => void>()
  const channels = cluster ? [channel, probeChannel] : [channel]

  const subscribe = async (): Promise<void> => {
    try {
      await subscriber.subscribe(...channels)
    } catch (err) {
      if (closed) return
      log.warn({ err }, 'grant channel subscribe failed')
      // A later 'ready' subscribes again; this covers a failure on a connection that stays up.
      setTimeout(() => { if (!closed && !subscribed && subscriber.status === 'ready') void subscribe() }, 1000).unref()
      return
    }
    if (closed) return
    const missedMessages = everSubscribed
    subscribed = true
    everSubscribed = true
    channelSuspect = false
    state.emit('change')
    if (missedMessages) reannounce('reconnected')
  }
  subscriber.on('ready', () => { void subscribe() })
  subscriber.on('message', (from: string, message: string) => {
    if (from === channel) deliver(message)
    else if (from === probeChannel) probes.get(message)?.()
  })

  /** Publishes a probe through the commands connection and waits for it on the subscriber connection. */
  const probeOnce = async (): Promise<boolean> => {
    // A Cluster client that is not ready would queue the PUBLISH (see redis-client.ts); nothing arrives then anyway.
    if (redis.status !== 'ready') return false
    const nonce = randomUUID()
    let settle: (arrived: boolean) => void = () => {}
    const arrived = new Promise<boolean>(resolve => {
      const timer = setTimeout(() => { settle(false) }, PROBE_TIMEOUT_MS)
      settle = (result) => { clearTimeout(timer); probes.delete(nonce); resolve(result) }
      probes.set(nonce, () => { settle(true) })
    })
    try {
      await withTimeout(redis.publish(probeChannel, nonce), PROBE_TIMEOUT_MS)
    } catch {
      settle(false)
    }
    return await arrived
  }

  let probing: Promise<boolean> | undefined
  const checkChannel = async (): Promise<boolean> => {
    if (probing !== undefined) return await probing
    probing = (async () => {
      if (closed || !everSubscribed || subscriber.status !== 'ready') return subscribed
      const arrived = await probeOnce()
      if (closed) return false
      if (!arrived) {
        if (subscribed) log.warn({}, 'grant channel probe did not arrive; notices from other replicas may be missed until it does')
        subscribed = false
        channelSuspect = true
        state.emit('change')
        // Subscribe again on the connection ioredis has now: it resubscribes by itself after moving to
        // another node, but gives up quietly when that SUBSCRIBE fails. SUBSCRIBE is idempotent.
        if (subscriber.status === 'ready') void subscribe()
        return false
      }
      if (!subscribed || channelSuspect) {
        const recovered = !subscribed
        subscribed = true
        channelSuspect = false
        state.emit('change')
        reannounce(recovered ? 'probe arrives again' : 'cluster node left')
      }
      return true
    })().finally(() => { probing = undefined })
    return await probing
  }
  let probeTimer: NodeJS.Timeout | undefined
  if (cluster) {
    probeTimer = setInterval(() => { void checkChannel() }, PROBE_INTERVAL_MS)
    probeTimer.unref()
    const suspect = (): void => {
      if (closed) return
      channelSuspect = true
      // Soon, not at once: ioredis picks the new subscriber node when it notices, which may be a moment later.
      setTimeout(() => { void checkChannel() }, 200).unref()
    }
    redis.on('-node', suspect)
    subscriber.on('-node', suspect)
  }

  /** Resolves true as soon as `condition` holds, false after `timeoutMs` or when the store closes. */
  const waitFor = async (condition: () => boolean, timeoutMs: number): Promise<boolean> => {
    if (condition()) return true
    return await new Promise<boolean>(resolve => {
      const finish = (result: boolean): void => {
        clearTimeout(timer)
        state.off('change', check)
        resolve(result)
      }
      const check = (): void => {
        if (condition()) finish(true)
        else if (closed) finish(false)
      }
      const timer = setTimeout(() => { finish(condition()) }, timeoutMs)
      state.on('change', check)
    })
  }

  const run = async <T>(command: () => Promise<T>): Promise<T> => {
    if (closed) throw new StoreError('closed', 'grant store is closed')
    if (redis.status !== 'ready') {
      // Before the first connection, wait a little so a replica that is still dialling Redis at startup
      // does not take it for an outage (and mint tokens every other replica then mints too). After it,
      // fail at once: the caller falls back to its local cache rather than waiting on a dead Redis.
      const connected = !everReady && await waitFor(() => redis.status === 'ready', commandTimeoutMs)
      if (!connected) throw new StoreError(closed ? 'closed' : 'unavailable', closed ? 'grant store is closed' : 'redis unavailable')
    }
    try {
      return await command()
    } catch (err) {
      throw toStoreError(err)
    }
  }

  return {
    kind: 'redis',

    async ready (timeoutMs = 5000) {
      const up = await waitFor(() => redis.status === 'ready' && subscribed, timeoutMs)
      if (!up) throw new StoreError(closed ? 'closed' : 'unavailable', closed ? 'grant store is closed' : 'redis not ready')
    },

    async get (key) {
      const keys = keysOf(key)
      const [raw, remainingMs] = await run(async () => {
        const replies = await redis.multi().get(keys.grant).pttl(keys.grant).exec()
        if (replies === null) throw new StoreError('unavailable', 'redis transaction aborted')
        for (const [err] of replies) if (err !== null) throw err
        return [replies[0]?.[1] as string | null, replies[1]?.[1] as number]
      })
      knownKeys.add(key)
      if (raw === null) return null
      const stored = parseStored(raw, StoredValueSchema)
      if (stored === undefined) {
        log.warn({ key }, 'stored grant is not in a known format; treating it as absent')
        return null
      }
      const opened = cipher.open(stored.sealed, keys.grant)
      if (opened === null) return null
      // Redis is the one clock every replica shares: the key's remaining time is the grant's remaining
      // life whatever the clock of the replica that wrote it said. A writer whose clock ran ahead would
      // otherwise make this replica overstate the grant's life; taking the earlier of the two means
      // clock skew can only ever shorten a grant here, never lengthen it. (The stored time wins with an
      // injected clock in tests, which runs ahead of Redis.)
      // Differences under a second are the time between write and read, not skew: leaving them alone
      // keeps obtainedAt (and so the hash-based refresh jitter) identical on every replica.
      let grant = opened
      const byRedis = remainingMs > 0 ? now() + remainingMs : undefined
      if (byRedis !== undefined && byRedis < grant.expiresAt - skewToleranceMs) {
        const shift = grant.expiresAt - byRedis
        grant = { ...grant, expiresAt: byRedis, obtainedAt: grant.obtainedAt - shift }
      }
      if (grantTimeToLive(grant, now()) <= 0) return null
      return { grant, fence: stored.fence }
    },

    async leaseRemainingMs (key) {
      const keys = keysOf(key)
      const remaining = await run(async () => await redis.pttl(keys.lease))
      return Math.max(0, remaining)
    },

    async acquireLease (key, ttlMs) {
      const keys = keysOf(key)
      const ttl = checkLeaseTtl(ttlMs)
      const owner = randomUUID()
      let fence: number | null
      try {
        fence = await run(async () => await scripts.cbAcquireLease(keys.lease, keys.fence, owner, ttl, maxSaneLeaseTtl(ttl)))
      } catch (err) {
        // A command that timed out on our side may still run when Redis catches up, leaving a lease
        // nobody knows it holds; every other replica would wait it out. Release it once Redis is back.
        orphanLease({ key, owner, fence: 0 })
        throw err
      }
      knownKeys.add(key)
      if (fence === null) return null
      return { key, owner, fence: Number(fence) } satisfies Lease
    },

    async renewLease (lease, ttlMs) {
      const keys = keysOf(lease.key)
      const renewed = await run(async () => await scripts.cbRenewLease(keys.lease, lease.owner, checkLeaseTtl(ttlMs)))
      return renewed === 1
    },

    async releaseLease (lease, options) {
      try {
        await releaseNow(lease, options?.announce === true)
      } catch (err) {
        orphanLease(lease)
        throw err
      }
    },

    async putGrant (lease, grant) {
      const keys = keysOf(lease.key)
      const checked = checkGrant(grant)
      // Redis TTL = time to expiry, so Redis never holds an expired token; an already expired grant has
      // no valid PX and would only be served to nobody, so it is not written at all.
      const ttl = grantTimeToLive(checked, now())
      if (ttl <= 0) {
        log.warn({ key: lease.key }, 'refused to store an already expired grant')
        return false
      }
      const value = JSON.stringify({ v: 1, fence: lease.fence, sealed: cipher.seal(checked, keys.grant) })
      const written = await run(async () => await scripts.cbPutGrant(keys.grant, keys.fence, String(lease.fence), value, ttl, channel, `${lease.key} ${lease.fence}`))
      knownKeys.add(lease.key)
      return written === 1
    },

    async deleteGrant (lease) {
      const keys = keysOf(lease.key)
      const deleted = await run(async () => await scripts.cbDeleteGrant(keys.grant, keys.fence, String(lease.fence), channel, lease.key))
      knownKeys.add(lease.key)
      return deleted === 1
    },

    onGrant (listener) {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    },

    async health (): Promise<StoreHealth> {
      if (closed) return { state: 'down', detail: 'closed' }
      if (redis.status !== 'ready') return { state: 'down', detail: `redis connection ${redis.status}` }
      if (redis instanceof Cluster) {
        const cluster = await clusterHealth(redis)
        if (cluster !== undefined) return { state: 'down', detail: cluster }
        // The grant channel is proven with a probe: a Cluster's subscriber connection is not ours to PING.
        if (!await checkChannel()) return { state: 'down', detail: subscribed ? 'grant channel probe did not arrive' : 'grant channel not subscribed' }
        return { state: 'up' }
      }
      // The subscriber is pinged too: it never writes on its own, so without this a silently dead
      // subscriber connection (a partition, no RST) would go unnoticed and replicas would miss grants.
      // The PING arms socketTimeout, which then drops that connection and reconnects.
      const [commands, channel] = await Promise.allSettled([
        withTimeout(redis.ping(), HEALTH_TIMEOUT_MS),
        subscribed ? withTimeout(subscriber.ping(), HEALTH_TIMEOUT_MS) : Promise.reject(new Error('not subscribed'))
      ])
      if (commands.status === 'rejected') return { state: 'down', detail: 'redis did not answer PING' }
      if (channel.status === 'rejected') return { state: 'down', detail: subscribed ? 'grant channel connection did not answer PING' : 'grant channel not subscribed' }
      return { state: 'up' }
    },

    async close () {
      if (closing !== undefined) return await closing
      closed = true
      clearInterval(probeTimer)
      listeners.clear()
      state.emit('change')
      closing = Promise.all([quit(redis, closeTimeoutMs), quit(subscriber, closeTimeoutMs)]).then(() => {})
      await closing
    }
  }
}
