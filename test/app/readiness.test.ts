import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { buildTestApp } from '../support/app.js'
import { useCleanup } from '../support/fixtures.js'
import { freePort } from '../support/ports.js'
import { spawnRedisServer } from '../support/redis-server.js'

describe('GET /readyz', () => {
  const cleanup = useCleanup()

  it('is ready with Redis up', async () => {
    const testApp = cleanup.add(await buildTestApp())
    const response = await testApp.app.inject('/readyz')
    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({ status: 'ready', checks: { store: { kind: 'redis', state: 'up', embedded: false } } })
  })

  it('is degraded, not failing, when Redis is unreachable, and ready again when it returns', async () => {
    const redis = cleanup.add(await spawnRedisServer())
    const testApp = cleanup.add(await buildTestApp({ env: { REDIS_URL: redis.url } }))
    expect((await testApp.app.inject('/readyz')).json()).toMatchObject({ status: 'ready' })

    await redis.kill()
    const degraded = await testApp.app.inject('/readyz')
    expect(degraded.statusCode).toBe(200)
    expect(degraded.json()).toMatchObject({ status: 'degraded', checks: { store: { kind: 'redis', state: 'down' } } })
    expect(degraded.body).not.toContain(redis.url)

    await redis.restart()
    await expect.poll(async () => (await testApp.app.inject('/readyz')).json().status, { timeout: 10_000, interval: 200 }).toBe('ready')
  })

  it('starts degraded when Redis is unreachable from the beginning', async () => {
    const port = await freePort()
    const testApp = cleanup.add(await buildTestApp({ env: { REDIS_URL: `redis://127.0.0.1:${port}`, TOKEN_ENCRYPTION_KEY: randomBytes(32).toString('base64') } }))
    const response = await testApp.app.inject('/readyz')
    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({ status: 'degraded', checks: { store: { state: 'down' } } })
  })

  it('answers 503 not_ready while shutting down', async () => {
    const testApp = cleanup.add(await buildTestApp({ store: 'memory' }))
    const { app } = testApp
    await app.listen({ port: 0, host: '127.0.0.1' })
    const address = app.server.address()
    const port = typeof address === 'object' && address !== null ? address.port : 0
    const health = await app.broker.health()
    expect(health.state).toBe('ready')
    await app.broker.close()
    const response = await fetch(`http://127.0.0.1:${port}/readyz`)
    expect(response.status).toBe(503)
    expect(await response.json()).toMatchObject({ status: 'not_ready' })
  })
})
