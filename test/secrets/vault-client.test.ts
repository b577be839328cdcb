import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { serializeError } from '../../src/observability/logger.js'
import { createVaultClient, VaultRequestError, type VaultClient } from '../../src/secrets/vault-client.js'
import { freePort } from '../support/ports.js'
import { sendJson, startScriptedServer, type ScriptedServer } from '../support/scripted-server.js'
import { startVaultStandIn, type VaultStandIn } from '../support/vault/stand-in.js'
import { useCleanup } from '../support/fixtures.js'
import { captureLogs } from '../support/logs.js'
import { expectSecretError } from './contract.js'
import { SecretError } from '../../src/errors.js'

describe('vault client', () => {
  const cleanup = useCleanup()

  async function standIn (): Promise<VaultStandIn> {
    return cleanup.add(await startVaultStandIn())
  }
  async function scripted (handler: Parameters<typeof startScriptedServer>[0]): Promise<ScriptedServer> {
    return cleanup.add(await startScriptedServer(handler))
  }
  function client (addr: string, options: { timeoutMs?: number, namespace?: string, token?: string } = {}): VaultClient {
    const vault = cleanup.add(createVaultClient({ addr, namespace: options.namespace, timeoutMs: options.timeoutMs ?? 2000, log: captureLogs().log }))
    if (options.token !== undefined) vault.setToken(options.token)
    return vault
  }

  describe('KV v2', () => {
    it('reads data and version, a given version, and the current version from metadata', async () => {
      const vault = await standIn()
      vault.writeSecret('secret/app/kivra', { client_id: 'a', client_secret: 'one' })
      vault.writeSecret('secret/app/kivra', { client_id: 'a', client_secret: 'two' })
      const kv = client(vault.url, { token: vault.rootToken })
      expect(await kv.readKv('secret', 'app/kivra')).toEqual({ version: 2, data: { client_id: 'a', client_secret: 'two' } })
      expect(await kv.readKv('secret', 'app/kivra', 1)).toEqual({ version: 1, data: { client_id: 'a', client_secret: 'one' } })
      expect(await kv.readKvVersion('secret', 'app/kivra')).toBe(2)
    })

    it('maps 404 to not_found, 403 to denied, 503 sealed to unavailable', async () => {
      const vault = await standIn()
      vault.writeSecret('secret/app/kivra', { client_secret: 'x' })
      const reader = vault.createToken({ policies: ['default'] })
      const kv = client(vault.url, { token: reader })
      await expectSecretError(kv.readKv('secret', 'app/missing'), 'denied')
      const root = client(vault.url, { token: vault.rootToken })
      const missing = await expectSecretError(root.readKv('secret', 'app/missing'), 'not_found')
      expect((missing as VaultRequestError).status).toBe(404)
      vault.seal()
      const sealed = await expectSecretError(root.readKv('secret', 'app/kivra'), 'unavailable')
      expect(sealed).toBeInstanceOf(VaultRequestError)
      expect((sealed as VaultRequestError).sealed).toBe(true)
      expect(sealed.message).toMatch(/503: Vault is sealed/)
    })

    it('treats a deleted version (404 with data: null) as not_found', async () => {
      const server = await scripted((_request, res) => {
        sendJson(res, 404, { data: { data: null, metadata: { version: 3, deletion_time: '2024-01-01T00:00:00Z', destroyed: false, created_time: '2024-01-01T00:00:00Z', custom_metadata: null } } })
      })
      await expectSecretError(client(server.url, { token: 'hvs.x' }).readKv('secret', 'app/x'), 'not_found')
    })

    it('rejects a reply of the wrong shape as invalid, naming the field but never the value', async () => {
      const value = `nested-${randomBytes(8).toString('hex')}`
      const server = await scripted((_request, res) => {
        sendJson(res, 200, { data: { data: { client_secret: { nested: value } }, metadata: { version: 1 } } })
      })
      const error = await expectSecretError(client(server.url, { token: 'hvs.x' }).readKv('secret', 'app/x'), 'invalid')
      expect(error.message).toMatch(/data\.data\.client_secret/)
      expect(JSON.stringify(serializeError(error))).not.toContain(value)
    })

    it('encodes path segments, so a path cannot smuggle a query', async () => {
      const server = await scripted((_request, res) => { sendJson(res, 404, { errors: [] }) })
      await expectSecretError(client(server.url, { token: 'hvs.x' }).readKv('secret', 'app/a?version=1'), 'not_found')
      expect(server.requests[0]?.path).toBe('/v1/secret/data/app/a%3Fversion%3D1')
    })
  })

  describe('errors', () => {
    it.each([
      [400, 'invalid'],
      [401, 'denied'],
      [429, 'unavailable'],
      [500, 'unavailable'],
      [502, 'unavailable']
    ] as const)('maps status %i to %s', async (status, reason) => {
      const server = await scripted((_request, res) => { sendJson(res, status, { errors: ['something happened'] }) })
      const error = await expectSecretError(client(server.url, { token: 'hvs.x' }).readKvVersion('secret', 'app/x'), reason)
      expect((error as VaultRequestError).status).toBe(status)
    })

    it('answers connection refused with unavailable and the network code only', async () => {
      const port = await freePort()
      const error = await expectSecretError(client(`http://127.0.0.1:${port}`, { token: 'hvs.x' }).lookupSelf(), 'unavailable')
      expect((error as VaultRequestError).code).toBe('ECONNREFUSED')
      expect(error.cause).toBeUndefined()
    })

    it('bounds every call by the timeout, even against a server that never answers', async () => {
      const server = await scripted(() => 'hang')
      const started = Date.now()
      const error = await expectSecretError(client(server.url, { token: 'hvs.x', timeoutMs: 300 }).readKv('secret', 'app/x'), 'unavailable')
      expect(Date.now() - started).toBeLessThan(1500)
      expect(error.message).toMatch(/timed out/)
    })

    it('keeps only a scrubbed summary of what Vault said', async () => {
      const token = `hvs.${randomBytes(20).toString('hex')}`
      const server = await scripted((request, res) => {
        // A hostile or buggy upstream quoting our own token back to us.
        sendJson(res, 500, { errors: [`failed for ${String(request.headers['x-vault-token'])}`] })
      })
      const error = await expectSecretError(client(server.url, { token }).readKv('secret', 'app/x'), 'unavailable')
      expect(error.message).not.toContain(token)
      expect(error.message).toMatch(/500: failed for \*\*\*/)
      expect(error.cause).toBeUndefined()
      expect(error).toBeInstanceOf(SecretError)
    })
  })

  describe('headers', () => {
    it('sends the token and namespace, and sends no token with a login', async () => {
      const vault = await standIn()
      vault.addAppRole({ roleName: 'broker', roleId: 'role-1', secretId: 'secret-1', tokenTtlSeconds: 60 })
      const kv = client(vault.url, { token: vault.rootToken, namespace: 'team-a' })
      await kv.lookupSelf()
      const grant = await kv.login('approle', { role_id: 'role-1', secret_id: 'secret-1' })
      expect(grant.leaseDurationSeconds).toBe(60)
      expect(grant.renewable).toBe(true)
      expect(vault.requests.map(request => [request.path, request.hadToken, request.namespace])).toEqual([
        ['auth/token/lookup-self', true, 'team-a'],
        ['auth/approle/login', false, 'team-a']
      ])
    })

    it('does not pick up VAULT_TOKEN or VAULT_PREFIX from the environment behind our back', async () => {
      const vault = await standIn()
      const saved = { token: process.env.VAULT_TOKEN, prefix: process.env.VAULT_PREFIX }
      process.env.VAULT_TOKEN = vault.rootToken
      process.env.VAULT_PREFIX = '/nope'
      try {
        const kv = client(vault.url)
        await expectSecretError(kv.lookupSelf(), 'denied')
        expect(vault.requests[0]).toMatchObject({ path: 'auth/token/lookup-self', hadToken: false })
      } finally {
        if (saved.token === undefined) delete process.env.VAULT_TOKEN
        else process.env.VAULT_TOKEN = saved.token
        if (saved.prefix === undefined) delete process.env.VAULT_PREFIX
        else process.env.VAULT_PREFIX = saved.prefix
      }
    })

    it('maps a refused login (400 invalid role or secret ID) to denied', async () => {
      const vault = await standIn()
      vault.addAppRole({ roleName: 'broker', roleId: 'role-1', secretId: 'secret-1', tokenTtlSeconds: 60 })
      const error = await expectSecretError(client(vault.url).login('approle', { role_id: 'role-1', secret_id: 'wrong-secret-id' }), 'denied')
      expect(error.message).toMatch(/400: invalid role or secret ID/)
    })
  })

  describe('token and health endpoints', () => {
    it('parses lookup-self and renew-self', async () => {
      const vault = await standIn()
      const token = vault.createToken({ ttlSeconds: 120, renewable: true, explicitMaxTtlSeconds: 100 })
      const kv = client(vault.url, { token })
      const info = await kv.lookupSelf()
      expect(info).toMatchObject({ renewable: true, creationTtlSeconds: 120, explicitMaxTtlSeconds: 100 })
      expect(info.ttlSeconds).toBeGreaterThan(100)
      const renewed = await kv.renewSelf(120)
      // Capped by the explicit max TTL, as Vault does.
      expect(renewed.leaseDurationSeconds).toBeLessThanOrEqual(100)
      expect(renewed.clientToken).toBe(token)
    })

    it('reads sys/health as active, standby (429) and sealed (503)', async () => {
      const vault = await standIn()
      const kv = client(vault.url)
      expect(await kv.health()).toEqual({ initialized: true, sealed: false, standby: false })
      vault.setStandby(true)
      expect(await kv.health()).toEqual({ initialized: true, sealed: false, standby: true })
      vault.seal()
      expect(await kv.health()).toMatchObject({ sealed: true })
    })
  })
})
