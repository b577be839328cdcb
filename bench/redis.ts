import { hasRedisServerBinary, spawnRedisServer } from '../test/support/redis-server.js'

/** REDIS_URL if set, else a redis-server spawned for the bench on a free port. */
export async function benchRedis (): Promise<{ url: string, stop: () => Promise<void> }> {
  if (process.env.REDIS_URL !== undefined && process.env.REDIS_URL !== '') return { url: process.env.REDIS_URL, stop: async () => {} }
  if (!hasRedisServerBinary()) throw new Error('bench needs Redis: set REDIS_URL or install redis-server')
  const redis = await spawnRedisServer()
  return { url: redis.url, stop: redis.stop }
}
