import { afterEach, describe, expect, it } from 'vitest'
import { createSharedCountStore, type CountStore } from '../../src/auth/rate-limit-store.js'
import { createRedisClient, type RedisClient } from '../../src/store/redis-client.js'
import { buildTestApp, sha256Hex, type TestApp } from '../support/app.js'
import { uniquePrefix } from '../support/redis.js'
import type { TestTopology } from '../support/redis-topology.js'

/** The Redis key the grant store uses for one part of a grant key (redis-store.ts keysOf). */
export function storeKey (prefix: string, key: string, part: 'grant' | 'lease' | 'fence'): string {
  return `${prefix}:{${key}}:${part}`
}

/** How a promise settled and how long it took. */
export async function measure<T> (promise: Promise<T>): Promise<{ value?: T, error?: unknown, ms: number }> {
  const started = Date.now()
  try {
    const value = await promise
    return { value, ms: Date.now() - started }
  } catch (error) {
    return { error, ms: Date.now() - started }
  }
}

/** Resolves once the client is ready (or rejects after `timeoutMs`). */
export async function clientReady (client: RedisClient, timeoutMs = 10_000): Promise<void> {
  if (client.status === 'ready') return
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`redis client not ready after ${timeoutMs} ms (${client.status})`)) }, timeoutMs)
    client.once('ready', () => { clearTimeout(timer); resolve() })
  })
}

/**
 * The rate limiter's shared counts (src/auth/rate-limit-store.ts) on a topology, through the same client
 * factory the broker uses. `precondition` may check that the chosen callers' counters are spread the way
 * the test needs (on a Cluster: over several masters).
 */
export function describeRateLimitCounts (topology: () => TestTopology, precondition?: (counterKey: (caller: string) => string, callers: string[]) => Promise<boolean>): void {
  describe('rate-limit counts', () => {
    const windowMs = 60_000
    const flushIntervalMs = 50
    const clients: RedisClient[] = []
    const closers: Array<() => Promise<void>> = []
    const prefixes: string[] = []
    afterEach(async () => {
      for (const close of closers.splice(0)) await close()
      for (const client of clients.splice(0)) client.disconnect()
      for (const prefix of prefixes.splice(0)) await topology().deleteKeys(prefix)
    })

    it('shares the counts of several callers between replicas, each counter where its slot is', async () => {
      const prefix = uniquePrefix('rl')
      prefixes.push(prefix)
      const namespace = `${prefix}:ratelimit:`
      const clock = Math.floor(Date.now() / windowMs) * windowMs + 10_000
      const counterKey = (caller: string): string => `${namespace}${caller}:${Math.floor(clock / windowMs)}`
      const callers = ['billing', 'mailer', 'ledger', 'payouts', 'search', 'audit']
      if (precondition !== undefined) expect(await precondition(counterKey, callers)).toBe(true)
      const replica = (): { store: CountStore, client: RedisClient } => {
        const client = createRedisClient(topology().connection, { connectionName: 'credential-broker:ratelimit', commandTimeoutMs: 500 })
        client.on('error', () => {})
        clients.push(client)
        const store = createSharedCountStore({ redis: client, namespace, windowMs, flushIntervalMs, now: () => clock })
        closers.push(store.close)
        return { store, client }
      }
      const incr = async (store: CountStore, key: string): Promise<number> => (await store.count(key)).current
      const flushed = async (): Promise<void> => { await new Promise(resolve => setTimeout(resolve, flushIntervalMs * 6)) }
      const [a, b] = [replica(), replica()]
      await Promise.all([clientReady(a.client), clientReady(b.client)])

      for (const caller of callers) for (let i = 0; i < 3; i++) await incr(a.store, caller)
      await flushed()
      // b's first request of the window reads the shared count: a's three, plus itself.
      expect(await Promise.all(callers.map(async caller => await incr(b.store, caller)))).toEqual(callers.map(() => 4))
      await flushed()
      expect(await Promise.all(callers.map(async caller => await incr(a.store, caller)))).toEqual(callers.map(() => 5))
      await flushed()
      expect(await Promise.all(callers.map(async caller => Number(await a.client.get(counterKey(caller)))))).toEqual(callers.map(() => 5))
    })
  })
}

/**
 * The app as `npm start` builds it from this topology's environment (REDIS_SENTINELS… or
 * REDIS_CLUSTER_NODES…, not REDIS_URL): ready, its grants in Redis, and one rate limit for two replicas.
 */
export function describeAppOnTopology (topology: () => TestTopology): void {
  describe('the app configured for this topology', () => {
    const apiKey = 'topology-caller-key-0123456789'
    const credentialsFile = {
      callers: [{ id: 'service', api_key_sha256: sha256Hex(apiKey) }],
      credentials: [{ id: 'sir', provider: 'sir-giving', environment: 'sandbox', secret: 'secret/sir', allowed_callers: ['service'] }]
    }
    const secrets = { 'secret/sir': { secretKey: 'sk_test_topology', hmacSecret: 'ab'.repeat(32), webhookSecret: 'whsec_topology' } }
    const apps: TestApp[] = []
    const prefixes: string[] = []
    afterEach(async () => {
      for (const app of apps.splice(0)) await app.close()
      for (const prefix of prefixes.splice(0)) await topology().deleteKeys(prefix)
    })

    it('is ready with its grants in Redis, and two replicas share one rate limit', async () => {
      // Fixed one-minute windows: start well before the next edge, so the count is not reset midway.
      const left = 60_000 - (Date.now() % 60_000)
      if (left < 5000) await new Promise(resolve => setTimeout(resolve, left + 20))
      const prefix = uniquePrefix('app-topology')
      prefixes.push(prefix)
      const env = { ...topology().env, REDIS_KEY_PREFIX: prefix, RATE_LIMIT_PER_MINUTE: '2' }
      const first = await buildTestApp({ credentialsFile, secrets, env })
      apps.push(first)
      const second = await buildTestApp({ credentialsFile, secrets, env })
      apps.push(second)
      expect(first.config.redis?.topology).toBe(topology().topology)
      expect(first.logs.entries().find(entry => entry.msg === 'grants are shared through redis')).toMatchObject({ topology: topology().topology, keyPrefix: prefix })
      const ready = await first.app.inject({ method: 'GET', url: '/readyz' })
      expect(ready.statusCode).toBe(200)
      expect(ready.json()).toMatchObject({ status: 'ready', checks: { store: { kind: 'redis', state: 'up', embedded: false } } })
      expect(ready.body).not.toContain(topology().env.REDIS_PASSWORD)

      const list = async (app: TestApp): Promise<number> => (await app.app.inject({ method: 'GET', url: '/v1/credentials', headers: { authorization: `Bearer ${apiKey}` } })).statusCode
      expect([await list(first), await list(first)]).toEqual([200, 200])
      // Replicas share counts through Redis at each flush (200 ms), not on every request.
      await new Promise(resolve => setTimeout(resolve, 600))
      expect(await list(second)).toBe(429)
      expect(await list(first)).toBe(429)
    })
  })
}
