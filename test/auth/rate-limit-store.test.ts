import { Redis } from 'ioredis'
import { beforeEach, describe, expect, it } from 'vitest'
import { createSharedCountStore, type CountStore } from '../../src/auth/rate-limit-store.js'
import { useCleanup } from '../support/fixtures.js'
import { freePort } from '../support/ports.js'
import { deleteKeys, testRedisUrl, uniquePrefix } from '../support/redis.js'
import { sleep } from '../../src/time.js'

const windowMs = 60_000
const flushIntervalMs = 50

describe('shared-count rate-limit store (real Redis)', () => {
  let namespace: string
  let clock: number
  /** The Redis clients of this test's replicas. */
  let clients: Redis[] = []
  const cleanup = useCleanup()

  beforeEach(() => {
    const prefix = uniquePrefix('rl')
    cleanup.defer(async () => { await deleteKeys(testRedisUrl(), prefix) })
    namespace = `${prefix}:ratelimit:`
    clients = []
    // Mid-window, so nothing straddles an edge unless a test moves the clock there.
    clock = Math.floor(1_700_000_000_000 / windowMs) * windowMs + 10_000
  })

  function replica (url = testRedisUrl()): CountStore {
    const redis = cleanup.add(new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 500, lazyConnect: false, retryStrategy: () => null }))
    redis.on('error', () => {})
    clients.push(redis)
    const store = createSharedCountStore({ redis, namespace, windowMs, flushIntervalMs, now: () => clock })
    cleanup.defer(store.close)
    return store
  }
  const incr = async (store: CountStore, key: string): Promise<{ current: number, ttl: number }> => {
    const { current, ttlMs } = await store.count(key)
    return { current, ttl: ttlMs }
  }
  const flushed = async (): Promise<void> => { await sleep(flushIntervalMs * 4) }
  const ready = async (): Promise<void> => {
    await Promise.all(clients.map(async redis => { if (redis.status !== 'ready') await new Promise(resolve => redis.once('ready', resolve)) }))
  }

  it('counts every request of a replica exactly, including a concurrent burst', async () => {
    const store = replica()
    await ready()
    const results = await Promise.all(Array.from({ length: 25 }, async () => await incr(store, 'billing')))
    expect(results.map(result => result.current).sort((a, b) => a - b)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1))
    expect(results.every(result => result.ttl === 50_000)).toBe(true)
  })

  it('shares counts between replicas through Redis, at the latest one flush later', async () => {
    const [a, b] = [replica(), replica()]
    await ready()
    for (let i = 0; i < 5; i++) await incr(a, 'billing')
    await flushed()
    // b's first request of the window reads the shared count: a's five, plus itself.
    expect((await incr(b, 'billing')).current).toBe(6)
    await incr(b, 'billing')
    await flushed()
    expect((await incr(a, 'billing')).current).toBe(8)
    await flushed()
    const redis = cleanup.add(new Redis(testRedisUrl()))
    expect(Number(await redis.get(`${namespace}billing:${Math.floor(clock / windowMs)}`))).toBe(8)
  })

  it('keeps callers apart', async () => {
    const store = replica()
    await ready()
    await incr(store, 'billing')
    await incr(store, 'billing')
    expect((await incr(store, 'mailer')).current).toBe(1)
  })

  it('counts without a promise only what it can count now and within the limit (the token fast lane)', async () => {
    const store = replica()
    await ready()
    // A caller's first request of a window must read the shared count first: nothing counted.
    expect(store.countWithin('billing', 3)).toBeUndefined()
    expect((await incr(store, 'billing')).current).toBe(1)
    expect(store.countWithin('billing', 3)).toEqual({ current: 2, ttlMs: 50_000 })
    expect(store.countWithin('billing', 3)).toEqual({ current: 3, ttlMs: 50_000 })
    // At the limit: refused without counting, so the ordinary path counts the request once.
    expect(store.countWithin('billing', 3)).toBeUndefined()
    expect((await incr(store, 'billing')).current).toBe(4)
    // A new window: the first request goes through Redis again.
    clock += windowMs
    expect(store.countWithin('billing', 3)).toBeUndefined()
  })

  it('starts a new count in a new window', async () => {
    const store = replica()
    await ready()
    for (let i = 0; i < 3; i++) await incr(store, 'billing')
    clock += windowMs
    const result = await incr(store, 'billing')
    expect(result.current).toBe(1)
    expect(result.ttl).toBe(50_000)
  })

  it('goes on counting on its own when Redis is unreachable', async () => {
    const store = replica(`redis://127.0.0.1:${await freePort()}`)
    const results: number[] = []
    for (let i = 0; i < 4; i++) results.push((await incr(store, 'billing')).current)
    await flushed()
    results.push((await incr(store, 'billing')).current)
    expect(results).toEqual([1, 2, 3, 4, 5])
  })
})
