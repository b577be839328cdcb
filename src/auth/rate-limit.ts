import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import rateLimit from '@fastify/rate-limit'
import { BrokerError } from '../errors.js'
import { createRedisClient, type RedisClient } from '../store/redis-client.js'
import { createSharedCountStore } from './rate-limit-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * The per-caller rate limit as an `onRequest` hook. Route plugins add it right after their
     * authentication hook: it counts the authenticated caller, before any body is read.
     */
    callerRateLimit: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
}

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

/**
 * Per-caller rate limit (@fastify/rate-limit), keyed by the authenticated caller id. With Redis (any
 * topology) the count is shared by every replica, on its own Redis connection under `<REDIS_KEY_PREFIX>:ratelimit:`,
 * through a store that batches its Redis writes (no round trip per request; rate-limit-store.ts); without
 * it, each replica counts in memory. The limit protects the broker from a runaway client: a Redis outage
 * must not turn into failed requests, so the store keeps counting per replica and `skipOnError` lets
 * any other store error through.
 *
 * Registered with `global: false`: only the routes that add `callerRateLimit` as a hook are limited, so
 * health, readiness, metrics and the docs never are.
 */
export const rateLimitPlugin = fp(async (app) => {
  const { config } = app
  let store: ReturnType<typeof createSharedCountStore> | undefined
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

  await app.register(rateLimit, {
    global: false,
    max: config.rateLimitPerMinute,
    timeWindow: windowMs,
    skipOnError: true,
    ...(store === undefined ? {} : { store: store.Store }),
    // Only ever called after authentication: an unauthenticated request has already been answered 401.
    keyGenerator: (request) => request.caller?.id ?? 'anonymous',
    onExceeded: (request, key) => { request.log.info({ caller: key }, 'caller rate limited') },
    // Thrown by the plugin, so the one problem+json handler answers it (with Retry-After).
    errorResponseBuilder: (request, context) => new BrokerError('CB_RATE_LIMITED',
      `caller "${request.caller?.id ?? 'anonymous'}" exceeded ${context.max} requests per minute; retry in ${context.after}`,
      { retryAfterSeconds: Math.max(1, Math.ceil(context.ttl / 1000)) })
  })

  const limit = app.rateLimit()
  app.decorate('callerRateLimit', async (request: FastifyRequest, reply: FastifyReply) => { await limit.call(app, request, reply) })
}, { name: 'rate-limit', fastify: '5.x', dependencies: ['config', 'auth'] })
