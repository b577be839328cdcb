import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startVaultStandIn, type VaultStandIn } from '../support/vault/stand-in.js'
import { sleep } from '../../src/time.js'

/**
 * The stand-in's replies against the shapes in Vault's API docs (api-docs/secret/kv/kv-v2,
 * api-docs/auth/token, api-docs/system/health), so the contract tests exercise documented behaviour.
 */
describe('Vault stand-in follows the documented API', () => {
  let vault: VaultStandIn
  beforeEach(async () => { vault = await startVaultStandIn() })
  afterEach(async () => { await vault.close() })

  async function call (method: string, path: string, token?: string, body?: unknown): Promise<{ status: number, json: Record<string, unknown> }> {
    const response = await fetch(`${vault.url}/v1/${path}`, {
      method,
      headers: { ...(token === undefined ? {} : { 'X-Vault-Token': token }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    const text = await response.text()
    return { status: response.status, json: text === '' ? {} : JSON.parse(text) as Record<string, unknown> }
  }

  it('KV v2 read: the documented envelope, data.data and data.metadata', async () => {
    vault.writeSecret('secret/app/kivra', { foo: 'bar' })
    const { status, json } = await call('GET', 'secret/data/app/kivra', vault.rootToken)
    expect(status).toBe(200)
    expect(Object.keys(json).sort()).toEqual(['auth', 'data', 'lease_duration', 'lease_id', 'mount_type', 'renewable', 'request_id', 'warnings', 'wrap_info'])
    expect(json.data).toEqual({
      data: { foo: 'bar' },
      metadata: { created_time: expect.any(String) as string, custom_metadata: null, deletion_time: '', destroyed: false, version: 1 }
    })
  })

  it('KV v2 metadata: current_version and versions', async () => {
    vault.writeSecret('secret/app/kivra', { foo: 'bar' })
    vault.writeSecret('secret/app/kivra', { foo: 'baz' })
    const { json } = await call('GET', 'secret/metadata/app/kivra', vault.rootToken)
    const data = json.data as Record<string, unknown>
    expect(data.current_version).toBe(2)
    expect(Object.keys(data.versions as object)).toEqual(['1', '2'])
    expect(data).toHaveProperty('max_versions')
    expect(data).toHaveProperty('updated_time')
  })

  it('errors: 404 {"errors":[]}, 403 permission denied / missing client token, 503 sealed', async () => {
    expect(await call('GET', 'secret/data/app/missing', vault.rootToken)).toEqual({ status: 404, json: { errors: [] } })
    expect(await call('GET', 'secret/data/app/missing', 'hvs.unknown')).toEqual({ status: 403, json: { errors: ['permission denied'] } })
    expect(await call('GET', 'secret/data/app/missing')).toEqual({ status: 403, json: { errors: ['missing client token'] } })
    vault.seal()
    expect(await call('GET', 'secret/data/app/missing', vault.rootToken)).toEqual({ status: 503, json: { errors: ['Vault is sealed'] } })
  })

  it('sys/health: 200 active, 429 standby (200 with standbyok), 503 sealed', async () => {
    expect((await call('GET', 'sys/health')).status).toBe(200)
    vault.setStandby(true)
    expect((await call('GET', 'sys/health')).status).toBe(429)
    expect((await call('GET', 'sys/health?standbyok=true')).status).toBe(200)
    vault.seal()
    const sealed = await call('GET', 'sys/health')
    expect(sealed.status).toBe(503)
    expect(sealed.json).toMatchObject({ initialized: true, sealed: true })
  })

  it('tokens expire, renew-self is capped by the explicit max TTL with a warning, non-renewable tokens are refused', async () => {
    const shortLived = vault.createToken({ ttlSeconds: 1 })
    expect((await call('GET', 'auth/token/lookup-self', shortLived)).status).toBe(200)
    await sleep(1100)
    expect(await call('GET', 'auth/token/lookup-self', shortLived)).toEqual({ status: 403, json: { errors: ['permission denied'] } })

    const capped = vault.createToken({ ttlSeconds: 60, explicitMaxTtlSeconds: 90 })
    const renewed = await call('POST', 'auth/token/renew-self', capped, { increment: '1h' })
    expect(renewed.status).toBe(200)
    expect((renewed.json.auth as { lease_duration: number }).lease_duration).toBeLessThanOrEqual(90)
    expect(renewed.json.warnings).toEqual([expect.stringMatching(/capped/) as string])

    const fixed = vault.createToken({ ttlSeconds: 60, renewable: false })
    expect(await call('POST', 'auth/token/renew-self', fixed, {})).toEqual({ status: 400, json: { errors: ['lease is not renewable'] } })
  })

  it('AppRole and Kubernetes logins: the auth block, and Vault\'s refusals', async () => {
    vault.addAppRole({ roleName: 'broker', roleId: 'r', secretId: 's', tokenTtlSeconds: 60 })
    const login = await call('POST', 'auth/approle/login', undefined, { role_id: 'r', secret_id: 's' })
    expect(login.json.auth).toMatchObject({ client_token: expect.stringMatching(/^hvs\./) as string, lease_duration: 60, renewable: true, metadata: { role_name: 'broker' } })
    expect(await call('POST', 'auth/approle/login', undefined, { role_id: 'r', secret_id: 'x' })).toEqual({ status: 400, json: { errors: ['invalid role or secret ID'] } })

    vault.addKubernetesRole({ role: 'broker', jwts: ['jwt-1'], tokenTtlSeconds: 60 })
    expect((await call('POST', 'auth/kubernetes/login', undefined, { role: 'broker', jwt: 'jwt-1' })).status).toBe(200)
    expect(await call('POST', 'auth/kubernetes/login', undefined, { role: 'broker', jwt: 'jwt-2' })).toEqual({ status: 403, json: { errors: ['permission denied'] } })
    expect(await call('POST', 'auth/kubernetes/login', undefined, { role: 'nobody', jwt: 'jwt-1' })).toEqual({ status: 400, json: { errors: ['invalid role name "nobody"'] } })
  })

  it('stop() refuses connections and start() serves again on the same port', async () => {
    await vault.stop()
    await expect(fetch(`${vault.url}/v1/sys/health`)).rejects.toThrow()
    await vault.start()
    expect((await fetch(`${vault.url}/v1/sys/health`)).status).toBe(200)
  })
})
