import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { describe, expect, it, vi } from 'vitest'
import { createGrantCipher } from '../../src/store/encryption.js'
import { createRedisGrantStore } from '../../src/store/redis-store.js'
import { useCleanup } from '../support/fixtures.js'
import { spawnRedisServer } from '../support/redis-server.js'

describe('a lease whose acquire timed out', () => {
  const cleanup = useCleanup()

  it('is released once Redis answers again, so no replica waits out a lease nobody holds', async () => {
    const redis = cleanup.add(await spawnRedisServer()) // its own server: CLIENT PAUSE stalls every client of a server
    const log = pino({ level: 'silent' })
    const store = cleanup.add(createRedisGrantStore({ url: redis.url, keyPrefix: 'lc', cipher: createGrantCipher(randomBytes(32).toString('base64'), { log }), log, commandTimeoutMs: 300 }))
    await store.ready()
    const admin = cleanup.add(new Redis(redis.url))
    // Redis stalls writes for longer than the command timeout: our acquire gives up, Redis runs it later.
    await admin.call('CLIENT', 'PAUSE', '800', 'WRITE')
    const outcome = await store.acquireLease('c#1', 30_000).catch((err: unknown) => err)
    expect(outcome).toMatchObject({ name: 'StoreError' })
    // The stalled acquire did run once Redis resumed (it set the fence)...
    let stalledFence = 0
    await vi.waitFor(async () => { stalledFence = Number(await admin.get('lc:{c#1}:fence')); expect(stalledFence).toBeGreaterThan(0) }, { timeout: 2000, interval: 50 })
    // ...and its lease is gone well before its 30 s would have run out.
    await vi.waitFor(async () => { expect(await admin.exists('lc:{c#1}:lease')).toBe(0) }, { timeout: 3000, interval: 50 })
    const lease = await store.acquireLease('c#1', 30_000)
    expect(lease?.fence).toBeGreaterThan(stalledFence)
  })
})
