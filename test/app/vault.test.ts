import { randomBytes } from 'node:crypto'
import { describe, expect, it, vi } from 'vitest'
import { buildTestApp, exampleApiKey, sha256Hex, type TestApp } from '../support/app.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn, type KivraStandIn } from '../support/providers/index.js'
import { startVaultStandIn, type VaultStandIn } from '../support/vault/stand-in.js'

const adminKey = 'vault-test-admin-key-0123456789'

describe('the broker on Vault (AppRole, encryption key held in Vault)', () => {
  const cleanup = useCleanup()

  async function start (): Promise<{ testApp: TestApp, vault: VaultStandIn, kivra: KivraStandIn }> {
    const kivra = cleanup.add(await startKivraStandIn())
    const vault = cleanup.add(await startVaultStandIn())
    vault.createPolicy('broker', ['secret/data/providers/*', 'secret/metadata/providers/*', 'secret/data/broker/*'])
    vault.addAppRole({ roleName: 'broker', roleId: 'role-id-1', secretId: 'secret-id-1', tokenTtlSeconds: 3600, policies: ['broker'] })
    vault.writeSecret('secret/providers/kivra', { ...kivra.secret } as Record<string, string>)
    vault.writeSecret('secret/broker/token-key', { keys: `k1:${randomBytes(32).toString('base64')}` })
    const testApp = cleanup.add(await buildTestApp({
      credentialsFile: {
        callers: [{ id: 'service', api_key_sha256: sha256Hex(exampleApiKey) }, { id: 'admin', api_key_sha256: sha256Hex(adminKey), admin: true }],
        credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/providers/kivra', base_url: kivra.url, allowed_callers: ['service'] }]
      },
      env: {
        VAULT_ADDR: vault.url,
        VAULT_AUTH: 'approle',
        VAULT_ROLE_ID: 'role-id-1',
        VAULT_SECRET_ID: 'secret-id-1',
        TOKEN_ENCRYPTION_KEY: 'vault:secret/broker/token-key#keys',
        SECRET_CHECK_INTERVAL_SECONDS: '5'
      }
    }))
    return { testApp, vault, kivra }
  }

  const token = async (app: TestApp): Promise<{ statusCode: number, body: { access_token?: string } }> => {
    const response = await app.app.inject({ url: '/v1/credentials/kivra/token', headers: { authorization: `Bearer ${exampleApiKey}` } })
    return { statusCode: response.statusCode, body: response.json() }
  }

  it('logs in with AppRole, reads the key and the client secret from Vault, and serves tokens', async () => {
    const { testApp, vault, kivra } = await start()
    expect(vault.count('POST', 'auth/approle/login')).toBe(1)
    const answer = await token(testApp)
    expect(answer.statusCode).toBe(200)
    expect(kivra.isTokenValid(answer.body.access_token as string)).toBe(true)
    expect((await testApp.app.inject('/readyz')).json()).toMatchObject({ status: 'ready', checks: { secrets: { kind: 'vault', state: 'ok', embedded: false } } })
    expect((await testApp.app.inject('/metrics')).body).toMatch(/^credential_broker_vault_authenticated\{kind="vault",embedded="false"\} 1$/m)
  })

  it('sealed Vault: degraded, tokens still served from held secrets; unsealed: ready again by itself', async () => {
    const { testApp, vault } = await start()
    const before = await token(testApp)
    vault.seal()
    // A refresh needs the provider, not Vault: the secret already held is used.
    await testApp.app.broker.forceRefresh('kivra')
    const during = await token(testApp)
    expect(during.statusCode).toBe(200)
    expect(during.body.access_token).not.toBe(before.body.access_token)
    await vi.waitFor(async () => {
      expect((await testApp.app.inject('/readyz')).json()).toMatchObject({ status: 'degraded', checks: { secrets: { state: 'degraded' } } })
    }, { timeout: 15_000, interval: 200 })

    vault.unseal()
    await vi.waitFor(async () => {
      expect((await testApp.app.inject('/readyz')).json()).toMatchObject({ status: 'ready' })
    }, { timeout: 15_000, interval: 200 })
  })

  it('a new secret version in Vault is picked up and re-minted', async () => {
    const { testApp, vault, kivra } = await start()
    const before = await token(testApp)
    kivra.secret = { client_id: kivra.secret.client_id as string, client_secret: 'rotated-secret' }
    vault.writeSecret('secret/providers/kivra', { ...kivra.secret } as Record<string, string>)
    await testApp.app.secrets.check()
    await vi.waitFor(() => { expect(kivra.mints).toBe(2) }, { timeout: 5000 })
    const after = await token(testApp)
    expect(after.body.access_token).not.toBe(before.body.access_token)
    expect(testApp.app.broker.statuses()[0]).toMatchObject({ secretVersion: 2 })
  })
  it('a new version the provider rejects: the admin view says rolled back, the metrics count it, tokens still flow', async () => {
    const { testApp, vault, kivra } = await start()
    expect((await token(testApp)).statusCode).toBe(200)
    vault.writeSecret('secret/providers/kivra', { client_id: kivra.secret.client_id as string, client_secret: 'a-typo' })
    await testApp.app.secrets.check()
    await vi.waitFor(() => { expect(testApp.app.broker.statuses()[0]).toMatchObject({ secretRolledBack: true }) }, { timeout: 5000 })
    const admin = await testApp.app.inject({ url: '/v1/admin/credentials', headers: { authorization: `Bearer ${adminKey}` } })
    expect(admin.json<{ credentials: unknown[] }>().credentials[0]).toMatchObject({ id: 'kivra', secret_version: 1, secret_rolled_back: true, state: 'fresh' })
    const metrics = (await testApp.app.inject('/metrics')).body
    expect(metrics).toMatch(/^credential_broker_secret_rollbacks_total\{credential="kivra"\} 1$/m)
    expect(metrics).toMatch(/^credential_broker_secret_rolled_back\{credential="kivra"\} 1$/m)
    const answer = await token(testApp)
    expect(answer.statusCode).toBe(200)
    expect(kivra.isTokenValid(answer.body.access_token as string)).toBe(true)
  })
})
