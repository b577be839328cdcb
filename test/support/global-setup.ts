import type { TestProject } from 'vitest/node'
import { hasRedisServerBinary, spawnRedisServer } from './redis-server.js'

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string
    redisSource: 'REDIS_URL' | 'redis-server' | 'testcontainers'
  }
}

/**
 * Finds a real Redis for the whole run: REDIS_URL if set, else a `redis-server` spawned on a free port,
 * else a container when a Docker engine answers. Tests never assume it is empty: each owns a key prefix.
 */
export default async function setup (project: TestProject): Promise<() => Promise<void>> {
  if (process.env.REDIS_URL !== undefined && process.env.REDIS_URL !== '') {
    project.provide('redisUrl', process.env.REDIS_URL)
    project.provide('redisSource', 'REDIS_URL')
    return async () => {}
  }
  if (hasRedisServerBinary()) {
    const redis = await spawnRedisServer()
    project.provide('redisUrl', redis.url)
    project.provide('redisSource', 'redis-server')
    return async () => { await redis.stop() }
  }
  try {
    const { GenericContainer } = await import('testcontainers')
    const container = await new GenericContainer('redis:7.4-alpine').withExposedPorts(6379).start()
    project.provide('redisUrl', `redis://${container.getHost()}:${container.getMappedPort(6379)}`)
    project.provide('redisSource', 'testcontainers')
    return async () => { await container.stop() }
  } catch (err) {
    throw new Error(
      'No Redis for the tests. Set REDIS_URL=redis://host:port, or install redis-server ' +
      '(apt-get install redis-server), or run a Docker engine for testcontainers. ' +
      `(testcontainers said: ${(err as Error).message.split('\n')[0]})`
    )
  }
}
