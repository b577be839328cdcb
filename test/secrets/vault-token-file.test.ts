import { mkdtempSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import type { SecretSource } from '../../src/secrets/types.js'
import { createVaultSecretSource } from '../../src/secrets/vault-source.js'
import { startVaultStandIn, type VaultStandIn } from '../support/vault/stand-in.js'
import { expectSecretError } from './contract.js'
import { captureLogs } from '../support/logs.js'
import { waitFor } from '../support/wait.js'

/*
 * VAULT_TOKEN_FILE as a Vault Agent sink: the agent rewrites the file (write to a temp name, rename) with a
 * new token; the broker, once Vault stops accepting the token it holds, reads the file again and retries
 * the call once.
 */

describe('VAULT_TOKEN_FILE', () => {
  const cleanups: Array<() => Promise<void>> = []
  afterEach(async () => { for (const cleanup of cleanups.splice(0).reverse()) await cleanup() })

  async function setup (): Promise<{ vault: VaultStandIn, source: SecretSource, first: string, sink: (token: string) => void, newToken: () => string }> {
    const vault = await startVaultStandIn()
    cleanups.push(vault.close)
    vault.createPolicy('read', ['secret/data/*', 'secret/metadata/*'])
    vault.writeSecret('secret/providers/kivra', { client_id: 'id', client_secret: 'secret' })
    const dir = mkdtempSync(join(tmpdir(), 'cb-agent-'))
    const file = join(dir, 'token')
    // As Vault Agent's file sink does: never a half-written file.
    const sink = (token: string): void => { writeFileSync(`${file}.tmp`, `${token}\n`); renameSync(`${file}.tmp`, file) }
    const newToken = (): string => vault.createToken({ ttlSeconds: 3600, renewable: true, policies: ['read'] })
    const first = newToken()
    sink(first)
    const config = loadConfig({ VAULT_ADDR: vault.url, VAULT_TOKEN_FILE: file, VAULT_TIMEOUT_MS: '1000' }, dir)
    expect(config.vault?.tokenFile).toBe(file)
    const source = createVaultSecretSource({ config: config.vault!, log: captureLogs('silent').log, probeIntervalMs: 100, retryBaseMs: 50, retryMaxMs: 200 })
    cleanups.push(async () => { await source.close() })
    await source.start()
    return { vault, source, first, sink, newToken }
  }

  it('is read again when Vault refuses the token (403), and the call is retried once with the new one', async () => {
    const { vault, source, first, sink, newToken } = await setup()
    expect((await source.read('secret/providers/kivra')).version).toBe(1)
    const old = vault.requests.length
    // The agent got a new token and rewrote the sink; the old token is revoked.
    sink(newToken())
    vault.revokeToken(first)
    expect((await source.read('secret/providers/kivra')).data).toEqual({ client_id: 'id', client_secret: 'secret' })
    // One refused read, a lookup of the dead token, the file re-read (a lookup of the new one), the retried read.
    const after = vault.requests.slice(old).map(request => `${request.method} ${request.path}`)
    expect(after).toEqual(['GET secret/data/providers/kivra', 'GET auth/token/lookup-self', 'GET auth/token/lookup-self', 'GET secret/data/providers/kivra'])
    expect(source.health()).toEqual({ state: 'ok', authenticated: true })
  })

  it('keeps re-reading a file whose token Vault refuses until the agent writes a valid one (never gives up like a static VAULT_TOKEN)', async () => {
    const { vault, source, first, sink, newToken } = await setup()
    await source.read('secret/providers/kivra')
    vault.revokeToken(first)
    // The agent has not written a new token yet.
    await expectSecretError(source.read('secret/providers/kivra'), 'denied')
    expect(source.health()).toMatchObject({ state: 'degraded', authenticated: false, detail: expect.stringMatching(/VAULT_TOKEN_FILE/) })
    sink(newToken())
    await waitFor('the broker to pick up the rewritten file by itself', () => source.health().state === 'ok', { timeout: 5000 })
    expect((await source.read('secret/providers/kivra')).version).toBe(1)
  })

  it('a static VAULT_TOKEN that Vault refuses stays refused (nothing to re-read)', async () => {
    const vault = await startVaultStandIn()
    cleanups.push(vault.close)
    vault.createPolicy('read', ['secret/data/*', 'secret/metadata/*'])
    vault.writeSecret('secret/providers/kivra', { client_id: 'id' })
    const token = vault.createToken({ policies: ['read'] })
    const config = loadConfig({ VAULT_ADDR: vault.url, VAULT_TOKEN: token }, mkdtempSync(join(tmpdir(), 'cb-cwd-')))
    expect(config.vault?.tokenFile).toBeUndefined()
    const source = createVaultSecretSource({ config: config.vault!, log: captureLogs('silent').log, probeIntervalMs: 100 })
    cleanups.push(async () => { await source.close() })
    await source.start()
    vault.revokeToken(token)
    await expectSecretError(source.read('secret/providers/kivra'), 'denied')
    await expectSecretError(source.read('secret/providers/kivra'), 'denied')
    expect(source.health().detail).toMatch(/restart with a new token/)
  })
})
