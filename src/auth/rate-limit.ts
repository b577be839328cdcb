import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'
import type { Caller } from '../config.js'
import { BrokerError } from '../errors.js'
import { createRedisClient, type RedisClient } from '../store/redis-client.js'
import { createLocalCountStore, createSharedCountStore, type CountStore, type Counted } from './rate-limit-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * The per-caller rate limit as an `onRequest` hook. Route plugins add it right after their
     * authentication hook: it counts the authenticated caller, before any body is read.
     */
    callerRateLimit: (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void
    /**
     * The same count for the token route's fast lane (routes/token-fast-lane.ts), without a hook: the
     * rate-limit headers of a request admitted now, or undefined — nothing counted — when the count needs
     * Redis first or the caller is at the limit (the ordinary path then counts and answers it).
     */
    callerAdmittedNow: (caller: Caller) => RateLimitHeaders | undefined
  }
}

/** x-ratelimit-limit, -remaining and -reset of an admitted request. */
export interface RateLimitHeaders { limit: number, remaining: number, resetSeconds: number }

/** The counting window; RATE_LIMIT_PER_MINUTE is requests per this window. */
const windowMs = 60_000
/** How often each replica adds its local counts to the shared ones in Redis (see rate-limit-store.ts). */
const flushIntervalMs = 200
/**
 * Counting is best effort: a Redis that does not answer within this time is treated as unreachable
 * (the replica counts on its own) rather than holding a caller's first request of a window.
 */
const commandTimeoutMs = 500
/** How long startup waits for the rate-limit connection, so the first requests are already counted in Redis. */
const readyTimeoutMs = 2000

async function waitUntilReady (redis: RedisClient, timeoutMs: number): Promise<boolean> {
  if (redis.status === 'ready') return true
  return await new Promise<boolean>(resolve => {
    const done = (ready: boolean): void => { clearTimeout(timer); redis.off('ready', onReady); resolve(ready) }
    const onReady = (): void => { done(true) }
    const timer = setTimeout(() => { done(false) }, timeoutMs)
    redis.once('ready', onReady)
  })
}

/** "43 seconds", "1 minute": how @fastify/rate-limit (whose answers these keep) words the wait. */
function waitText (seconds: number): string {
  if (seconds < 60) return `${seconds} second${seconds === 1 ? '' : 's'}`
  const minutes = Math.round(seconds / 60)
  return `${minutes} minute${minutes === 1 ? '' : 's'}`
}

/** The rate-limit headers of a counted request (remaining never below 0). */
function limitHeaders (limit: number, counted: Counted): RateLimitHeaders {
  return { limit, remaining: Math.max(0, limit - counted.current), resetSeconds: Math.ceil(counted.ttlMs / 1000) }
}

/**
 * Answers one counted request: the rate-limit headers, then either the next hook or a 429 (the one
 * problem+json handler answers it, with Retry-After). The headers, their order and the 429 are those
 * @fastify/rate-limit gave before this limiter replaced it (test/api/answers.test.ts).
 */
function admit (request: FastifyRequest, reply: FastifyReply, max: number, counted: Counted, done: HookHandlerDoneFunction): void {
  const { remaining, resetSeconds } = limitHeaders(max, counted)
  if (counted.current <= max) {
    void reply.header('x-ratelimit-limit', max).header('x-ratelimit-remaining', remaining).header('x-ratelimit-reset', resetSeconds)
    done()
    return
  }
  const caller = request.caller?.id ?? 'anonymous'
  request.log.info({ caller }, 'caller rate limited')
  void reply.header('x-ratelimit-limit', max).header('x-ratelimit-remaining', 0).header('x-ratelimit-reset', resetSeconds).header('retry-after', resetSeconds)
  done(new BrokerError('CB_RATE_LIMITED', `caller "${caller}" exceeded ${max} requests per minute; retry in ${waitText(resetSeconds)}`, { retryAfterSeconds: Math.max(1, resetSeconds) }))
}

/**
 * Per-caller rate limit, keyed by the authenticated caller id, in fixed one-minute windows aligned on the
 * clock. A callback hook that answers without a promise for every request but a caller's first of a window
 * on a replica (rate-limit-store.ts), so a token cache hit stays one synchronous pass (issue 12).
 *
 * With Redis (any topology) the count is shared by every replica, on its own Redis connection under
 * `<REDIS_KEY_PREFIX>:ratelimit:`, through a store that batches its Redis writes (no round trip per
 * request); without it, each replica counts in memory. The limit protects the broker from a runaway
 * client: a Redis outage must not turn into failed requests, so the store keeps counting per replica.
 *
 * Only the routes that add `callerRateLimit` as a hook are limited, so health, readiness, metrics and the
 * docs never are.
 */
export const rateLimitPlugin = fp(async (app) => {
  const { config } = app
  let store: CountStore = createLocalCountStore({ windowMs })
  if (config.redis !== undefined) {
    const { keyPrefix, ...connection } = config.redis
    // Its own connection, with the store's fail-fast settings (a queued count would hold its request)
    // and a shorter command timeout.
    const redis = createRedisClient(connection, { connectionName: 'credential-broker:ratelimit', commandTimeoutMs })
    let down = false
    let closing = false
    // One line per outage, not one per reconnect attempt: a lost connection ('close') or a failed
    // reconnect ('error'), whichever comes first.
    const lost = (err?: Error): void => {
      if (!down && !closing) app.log.warn(err === undefined ? {} : { err }, 'rate-limit Redis unreachable; each replica counts on its own until it returns')
      down = true
    }
    redis.on('error', lost)
    redis.on('close', () => { lost() })
    redis.on('ready', () => {
      if (down) app.log.info({}, 'rate-limit Redis reachable again')
      down = false
    })
    if (!await waitUntilReady(redis, readyTimeoutMs)) app.log.warn({}, 'rate-limit Redis not reachable at start; each replica counts on its own until it is')
    const shared = createSharedCountStore({ redis, namespace: `${keyPrefix}:ratelimit:`, windowMs, flushIntervalMs })
    app.addHook('onClose', async () => {
      closing = true
      await shared.close()
      await redis.quit().catch(() => { redis.disconnect() })
    })
    store = shared
  }
  const max = config.rateLimitPerMinute
  // A count that fails lets the request through, as @fastify/rate-limit's skipOnError did.
  const uncounted: Counted = { current: 0, ttlMs: 0 }

  app.decorate('callerRateLimit', (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
    // Only ever called after authentication: an unauthenticated request has already been answered 401.
    const caller = request.caller
    const limit = caller?.rate_limit_per_minute ?? max
    const counted = store.count(caller?.id ?? 'anonymous')
    if (counted instanceof Promise) counted.then(result => { admit(request, reply, limit, result, done) }, () => { admit(request, reply, limit, uncounted, done) })
    else admit(request, reply, limit, counted, done)
  })
  app.decorate('callerAdmittedNow', (caller: Caller): RateLimitHeaders | undefined => {
    const limit = caller.rate_limit_per_minute ?? max
    const counted = store.countWithin(caller.id, limit)
    return counted === undefined ? undefined : limitHeaders(limit, counted)
  })
}, { name: 'rate-limit', fastify: '5.x', dependencies: ['config', 'auth'] })
