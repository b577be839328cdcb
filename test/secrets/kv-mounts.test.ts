import { afterEach, describe, expect, it } from 'vitest'
import { CredentialSchema, loadConfig } from '../../src/config.js'
import { splitSecretPath } from '../../src/secrets/vault-source.js'
import { createVaultSecretSource } from '../../src/secrets/vault-source.js'
import type { SecretSource } from '../../src/secrets/types.js'
import { startVaultStandIn, type VaultStandIn } from '../support/vault/stand-in.js'
import { expectSecretError } from './contract.js'
import { captureLogs } from '../support/logs.js'

/* `secret: "<mount>:<path>"` for KV v2 mounts whose name holds a slash; "<mount>/<path>" as before. */

describe('secret references', () => {
  it('split "<mount>/<path>" at the first slash and "<mount>:<path>" at the colon', () => {
    expect(splitSecretPath('secret/providers/kivra')).toEqual({ mount: 'secret', key: 'providers/kivra' })
    expect(splitSecretPath('kv/platform:providers/kivra')).toEqual({ mount: 'kv/platform', key: 'providers/kivra' })
    expect(splitSecretPath('kv:providers/kivra')).toEqual({ mount: 'kv', key: 'providers/kivra' })
    expect(() => splitSecretPath('kivra')).toThrow(/"<mount>\/<path>" or "<mount>:<path>"/)
  })

  it('are validated in the credentials file', () => {
    const credential = (secret: string): boolean => CredentialSchema.safeParse({ id: 'k', provider: 'kivra', environment: 'sandbox', secret }).success
    for (const good of ['secret/providers/kivra', 'kv/platform:providers/kivra', 'a/b/c:d/e']) expect(credential(good), good).toBe(true)
    for (const bad of ['kivra', 'kv/platform:', ':providers/kivra', '/kv:x', 'kv/:x', 'kv:/x', 'kv:a:b', 'secret/ x']) expect(credential(bad), bad).toBe(false)
  })

  it('may name the encryption key in such a mount', () => {
    expect(() => loadConfig({ VAULT_ADDR: 'http://127.0.0.1:1', VAULT_TOKEN: 't', TOKEN_ENCRYPTION_KEY: 'vault:kv/platform:broker/key#keys' })).not.toThrow()
    expect(() => loadConfig({ VAULT_ADDR: 'http://127.0.0.1:1', VAULT_TOKEN: 't', TOKEN_ENCRYPTION_KEY: 'vault:kv/platform:#keys' })).toThrow(/TOKEN_ENCRYPTION_KEY/)
  })
})

describe('reading a KV v2 mount named kv/platform', () => {
  let vault: VaultStandIn | undefined
  let source: SecretSource | undefined
  afterEach(async () => {
    await source?.close()
    await vault?.close()
  })

  it('reads data and versions with "kv/platform:<path>", and "secret/<path>" as before, from the same Vault', async () => {
    vault = await startVaultStandIn()
    vault.addKvMount('kv/platform')
    vault.createPolicy('read', ['kv/platform/data/providers/*', 'kv/platform/metadata/providers/*', 'secret/data/providers/*', 'secret/metadata/providers/*'])
    vault.writeSecret('kv/platform:providers/kivra', { client_id: 'platform-id', client_secret: 'v1' })
    vault.writeSecret('secret/providers/kivra', { client_id: 'secret-id', client_secret: 'old-form' })
    source = createVaultSecretSource({
      config: loadConfig({ VAULT_ADDR: vault.url, VAULT_TOKEN: vault.createToken({ policies: ['read'] }) }).vault!,
      log: captureLogs('silent').log
    })
    await source.start()
    expect(await source.read('kv/platform:providers/kivra')).toEqual({ data: { client_id: 'platform-id', client_secret: 'v1' }, version: 1 })
    expect(vault.count('GET', 'kv/platform/data/providers/kivra')).toBe(1)
    vault.writeSecret('kv/platform:providers/kivra', { client_id: 'platform-id', client_secret: 'v2' })
    expect(await source.latestVersion('kv/platform:providers/kivra')).toBe(2)
    expect(vault.count('GET', 'kv/platform/metadata/providers/kivra')).toBe(1)
    expect((await source.read('secret/providers/kivra')).data.client_secret).toBe('old-form')
    // The slash form cannot reach it: "kv" is not a mount.
    await expectSecretError(source.read('kv/platform/providers/kivra'), 'not_found')
  })
})
