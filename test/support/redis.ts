import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { inject } from 'vitest'

/** The real Redis chosen for this run by global-setup.ts. */
export function testRedisUrl (): string {
  return inject('redisUrl')
}

/** A key prefix no other test uses, so nothing depends on what else is in Redis. */
export function uniquePrefix (name = 't'): string {
  return `test-${name}-${randomBytes(6).toString('hex')}`
}

/** Deletes every key under a prefix (SCAN, never KEYS). */
export async function deleteKeys (url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
      cursor = next
      if (keys.length > 0) await redis.del(...keys)
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
}
