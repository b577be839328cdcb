import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { buildTestApp, exampleApiKey, sha256Hex, type TestApp } from '../support/app.js'
import { useCleanup } from '../support/fixtures.js'
import { freePort } from '../support/ports.js'
import { startKivraStandIn, type KivraStandIn } from '../support/providers/index.js'
import { spawnRedisServer } from '../support/redis-server.js'
import { startVaultStandIn, type VaultStandIn } from '../support/vault/stand-in.js'

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

describe('GET /readyz with Vault unreachable', () => {
  const cleanup = useCleanup()
  const readinessGauge = async (testApp: TestApp): Promise<string | undefined> =>
    /^credential_broker_readiness_state (\d)$/m.exec((await testApp.app.inject('/metrics')).body)?.[1]

  async function standIns (): Promise<{ vault: VaultStandIn, kivra: KivraStandIn }> {
    const kivra = cleanup.add(await startKivraStandIn())
    const vault = cleanup.add(await startVaultStandIn())
    vault.writeSecret('secret/providers/kivra', { ...kivra.secret } as Record<string, string>)
    return { vault, kivra }
  }

  /** A broker on Vault (token auth) and the run's Redis, with one Kivra credential. */
  async function broker (vault: VaultStandIn, kivra: KivraStandIn, env: Record<string, string> = {}): Promise<TestApp> {
    return cleanup.add(await buildTestApp({
      credentialsFile: {
        callers: [{ id: 'service', api_key_sha256: sha256Hex(exampleApiKey) }],
        credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/providers/kivra', base_url: kivra.url, allowed_callers: ['service'] }]
      },
      env: { VAULT_ADDR: vault.url, VAULT_AUTH: 'token', VAULT_TOKEN: vault.rootToken, ...env }
    }))
  }
  const token = async (testApp: TestApp): Promise<number> =>
    (await testApp.app.inject({ url: '/v1/credentials/kivra/token', headers: { authorization: `Bearer ${exampleApiKey}` } })).statusCode

  it('is 503 not_ready with the reason while no secret was ever read and nothing is held or stored; 200 once Vault answers', async () => {
    const { vault, kivra } = await standIns()
    await vault.stop()
    const testApp = await broker(vault, kivra)

    const response = await testApp.app.inject('/readyz')
    expect(response.statusCode).toBe(503)
    const body = response.json()
    expect(body).toMatchObject({ status: 'not_ready', checks: { store: { state: 'up' }, secrets: { kind: 'vault', state: 'degraded' } } })
    expect(body.reason).toMatch(/^cannot serve any credential: the secret source is unavailable \(Vault unreachable \(ECONNREFUSED\)\), no client secret has been read, and no grant is held or stored$/)
    expect(await readinessGauge(testApp)).toBe('0')
    expect(await token(testApp)).toBeGreaterThanOrEqual(500)

    await vault.start()
    // The source's probe notices Vault is back; the scheduled retry reads the secret and mints.
    await expect.poll(async () => (await testApp.app.inject('/readyz')).statusCode, { timeout: 20_000, interval: 250 }).toBe(200)
    await expect.poll(() => kivra.mints, { timeout: 20_000, interval: 250 }).toBeGreaterThan(0)
    expect(testApp.app.secrets.peek('secret/providers/kivra')).toBeDefined()
    expect((await testApp.app.inject('/readyz')).json()).toMatchObject({ status: 'ready' })
    expect(await readinessGauge(testApp)).toBe('2')
    expect(await token(testApp)).toBe(200)
  })

  it('is degraded 200 when it holds a stored grant another replica minted, with Vault down from the start', async () => {
    const { vault, kivra } = await standIns()
    const key = randomBytes(32).toString('base64')
    const first = await broker(vault, kivra, { TOKEN_ENCRYPTION_KEY: key })
    expect(await token(first)).toBe(200)
    await vault.stop()

    // Same Redis prefix and key: the second replica loads the grant the first one stored.
    const second = await broker(vault, kivra, { REDIS_KEY_PREFIX: first.prefix, TOKEN_ENCRYPTION_KEY: key })
    const response = await second.app.inject('/readyz')
    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({ status: 'degraded', checks: { secrets: { state: 'degraded' } } })
    expect(response.json().reason).toMatch(/secret source is degraded \(Vault unreachable/)
    expect(await readinessGauge(second)).toBe('1')
    expect(await token(second)).toBe(200)
    expect(kivra.mints).toBe(1)
  })
})

describe('GET /readyz with file secrets', () => {
  const cleanup = useCleanup()

  it('is ready with signing credentials only (no grant is ever held)', async () => {
    const testApp = cleanup.add(await buildTestApp({
      store: 'memory',
      credentialsFile: {
        callers: [{ id: 'service', api_key_sha256: sha256Hex(exampleApiKey) }],
        credentials: [{ id: 'sir', provider: 'sir-giving', environment: 'sandbox', secret: 'secret/sir', allowed_callers: ['service'] }]
      },
      secrets: { 'secret/sir': { secretKey: 'sk_test_ready', hmacSecret: 'ab'.repeat(32), webhookSecret: 'whsec_ready' } }
    }))
    const response = await testApp.app.inject('/readyz')
    expect(response.statusCode).toBe(200)
    expect(response.json()).toMatchObject({ status: 'ready', checks: { secrets: { kind: 'file', embedded: true }, store: { kind: 'memory' } } })
    expect(response.json().reason).toBeUndefined()
  })
})
