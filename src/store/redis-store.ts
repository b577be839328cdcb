import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { Redis, type RedisOptions } from 'ioredis'
import type { Logger } from 'pino'
import { z } from 'zod'
import type { GrantCipher } from './encryption.js'
import { notifyListeners, type GrantListener } from './listeners.js'
import type { GrantStore, Lease, StoreHealth } from './types.js'
import { checkGrant, checkGrantKey, checkLeaseTtl, grantTimeToLive } from './validate.js'
import { parseStored } from './parse-stored.js'
import { StoreError } from '../errors.js'
import { backoffDelayMs, withTimeout } from '../time.js'

export interface RedisGrantStoreOptions {
  /** redis:// or rediss:// URL; settings in `redisOptions` apply on top of it. */
  url?: string | undefined
  /** ioredis options (host, port, TLS, Sentinel...). The fail-fast settings below always win. */
  redisOptions?: RedisOptions | undefined
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

// Each script runs atomically in Redis: no other client's command can run between its steps, which is
// what makes "take the lease and bump the fence" and "check the fence and write" single operations.

/** KEYS: lease, fence. ARGV: owner, ttl ms. Returns the new fence, or nil when someone holds the lease. */
const acquireLeaseScript = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false
`

/**
 * KEYS: lease. ARGV: owner, channel, key, announce ("1"/"0"). Deletes the lease only if we still own it
 * (it may have expired and been retaken); when asked, announces it like a write, so replicas waiting on
 * this lease look again at once instead of sleeping until it would have lapsed (a holder whose refresh
 * failed writes no grant, and so sends no other notice).
 */
const releaseLeaseScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[4] == '1' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
  return 1
end
return 0
`

/**
 * KEYS: grant, fence. ARGV: fence, value, ttl ms, channel, notice ("<key> <fence>"). Writes only if no lease was granted after
 * the writer's: every acquisition increments the fence, so a refresher whose lease expired mid-mint finds
 * a larger fence and its late write is dropped instead of overwriting a newer grant.
 */
const putGrantScript = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
`

/** KEYS: grant, fence. ARGV: fence, channel, key. Fenced like putGrantScript. */
const deleteGrantScript = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`

interface GrantScripts {
  cbAcquireLease: (leaseKey: string, fenceKey: string, owner: string, ttlMs: number) => Promise<number | null>
  cbReleaseLease: (leaseKey: string, owner: string, channel: string, key: string, announce: string) => Promise<number>
  cbPutGrant: (grantKey: string, fenceKey: string, fence: string, value: string, ttlMs: number, channel: string, key: string) => Promise<number>
  cbDeleteGrant: (grantKey: string, fenceKey: string, fence: string, channel: string, key: string) => Promise<number>
}

const DEFAULT_COMMAND_TIMEOUT_MS = 1000
const HEALTH_TIMEOUT_MS = 500
/** Reconnect forever: exponential from 100 ms, capped at 2 s, 40 % of it random so replicas do not retry in step. */
export function reconnectDelay (attempt: number): number {
  return Math.round(backoffDelayMs(attempt, undefined, { baseMs: 100, capMs: 2000, jitterRatio: 0.4 }))
}

/**
 * The shared grant store on Redis, single node or Sentinel (through `redisOptions`). The keys of one grant
 * share a hash tag, so the scripts are Cluster-safe, but this factory does not build a Cluster client. Grants are sealed with `cipher`, bound to their Redis key, and expire
 * with the grant. Leases are `SET NX PX` with a random owner; writes are fenced. Every write and delete
 * is published on `<prefix>:grants`, which a second (subscriber) connection listens to.
 *
 * Callers must fail fast when Redis is down (the broker then serves from its local cache), so commands
 * are never queued while disconnected and each has a timeout; the connections reconnect by themselves.
 */
/** Clock differences below this between the writer of a grant and Redis are ignored (see get). */
const skewToleranceMs = 1000

export function createRedisGrantStore (options: RedisGrantStoreOptions): RedisGrantStore {
  const { keyPrefix, cipher, log } = options
  const now = options.now ?? Date.now
  const commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS
  const closeTimeoutMs = options.closeTimeoutMs ?? 1000
  const channel = `${keyPrefix}:grants`

  const clientOptions: RedisOptions = {
    connectTimeout: 2000,
    commandTimeout: commandTimeoutMs,
    // A peer that stops answering without closing the socket (a partition) would otherwise keep a dead
    // connection forever; no reply within this time drops it and starts a reconnect.
    socketTimeout: Math.max(3 * commandTimeoutMs, 2000),
    // TCP keepalive as a second line for the idle subscriber connection (health() PINGs it as well).
    keepAlive: 10_000,
    retryStrategy: reconnectDelay,
    connectionName: 'credential-broker',
    ...options.redisOptions,
    // Not overridable: they are what makes a dead Redis fail fast instead of hanging callers. A command
    // queued while disconnected, or re-sent after a reconnect, would run long after its caller gave up
    // (a lease nobody knows it holds, a write the caller counted as failed), so neither ever happens.
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    lazyConnect: false,
    keyPrefix: ''
  }
  const redis = options.url === undefined ? new Redis(clientOptions) : new Redis(options.url, clientOptions)
  redis.defineCommand('cbAcquireLease', { numberOfKeys: 2, lua: acquireLeaseScript })
  redis.defineCommand('cbReleaseLease', { numberOfKeys: 1, lua: releaseLeaseScript })
  redis.defineCommand('cbPutGrant', { numberOfKeys: 2, lua: putGrantScript })
  redis.defineCommand('cbDeleteGrant', { numberOfKeys: 2, lua: deleteGrantScript })
  const scripts = redis as unknown as GrantScripts
  // A connection in subscriber mode cannot run other commands, hence a second one. We subscribe on every
  // 'ready' ourselves instead of ioredis' autoResubscribe, to know when messages may have been missed.
  const subscriber = redis.duplicate({ connectionName: 'credential-broker:sub', autoResubscribe: false })

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
    // A slow Redis (not a lost one) emits no 'ready' again: retry on a timer as well.
    setTimeout(releaseOrphans, commandTimeoutMs).unref()
  }
  const releaseOrphans = (): void => {
    if (closed || redis.status !== 'ready') return
    for (const lease of orphans.values()) {
      orphans.delete(lease.owner)
      releaseNow(lease, true).catch(() => { orphanLease(lease) })
    }
  }

  const watch = (client: Redis, connection: 'commands' | 'subscriber'): void => {
    let outage = false
    client.on('ready', () => {
      if (outage) log.info({ connection }, 'redis connection restored')
      outage = false
      if (connection === 'commands') {
        everReady = true
        releaseOrphans()
      }
      state.emit('change')
    })
    client.on('close', () => {
      if (connection === 'subscriber') subscribed = false
      if (!closed && !outage) {
        outage = true
        log.warn({ connection }, 'redis connection lost; reconnecting')
      }
      state.emit('change')
    })
    // ioredis emits an error on every failed reconnect attempt: warn once per outage, the rest at debug.
    client.on('error', (err: Error) => {
      if (closed) return
      if (outage) {
        log.debug({ connection, err }, 'redis connection error')
        return
      }
      outage = true
      log.warn({ connection, err }, 'redis connection error; reconnecting')
    })
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

  const subscribe = async (): Promise<void> => {
    try {
      await subscriber.subscribe(channel)
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
    state.emit('change')
    if (missedMessages) {
      log.info({ keys: knownKeys.size }, 'grant channel resubscribed; re-announcing known keys')
      for (const key of knownKeys) deliver(key)
    }
  }
  subscriber.on('ready', () => { void subscribe() })
  subscriber.on('message', (from: string, message: string) => {
    if (from === channel) deliver(message)
  })

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
        fence = await run(async () => await scripts.cbAcquireLease(keys.lease, keys.fence, owner, ttl))
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
      listeners.clear()
      state.emit('change')
      closing = Promise.all([quit(redis, closeTimeoutMs), quit(subscriber, closeTimeoutMs)]).then(() => {})
      await closing
    }
  }
}

/** QUIT lets Redis finish what it has; a connection that cannot say goodbye in time is simply dropped. */
async function quit (client: Redis, timeoutMs: number): Promise<void> {
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
function toStoreError (err: unknown): StoreError {
  if (err instanceof StoreError) return err
  if (err instanceof Error && err.message === 'Command timed out') return new StoreError('unavailable', 'redis command timed out', { cause: err })
  if (err instanceof Error && err.name === 'ReplyError') return new StoreError('rejected', 'redis refused the command', { cause: err })
  return new StoreError('unavailable', 'redis unavailable', { cause: err })
}
