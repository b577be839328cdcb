import { describe, expect, it } from 'vitest'
import type { VaultConfig } from '../../src/config.js'
import type { SecretSource } from '../../src/secrets/types.js'
import { createVaultSecretSource } from '../../src/secrets/vault-source.js'
import { testVaultConfig } from '../support/vault/config.js'
import { startVaultStandIn, type VaultStandIn } from '../support/vault/stand-in.js'
import { useCleanup } from '../support/fixtures.js'
import { captureLogs } from '../support/logs.js'
import { sleep } from '../../src/time.js'
import { waitFor } from '../support/wait.js'
import { expectSecretError } from './contract.js'

describe('vault secret source: health without traffic', () => {
  const cleanup = useCleanup()

  async function setup (config: Partial<VaultConfig> = {}): Promise<{ vault: VaultStandIn, source: SecretSource }> {
    const vault = cleanup.add(await startVaultStandIn())
    vault.createPolicy('read', ['secret/data/*', 'secret/metadata/*'])
    vault.writeSecret('secret/providers/kivra', { client_secret: 'x' })
    const source = cleanup.add(createVaultSecretSource({
      config: testVaultConfig(vault.url, { token: vault.createToken({ ttlSeconds: 3600, renewable: true, policies: ['read'] }), timeoutMs: 300, ...config }),
      log: captureLogs('silent').log,
      probeIntervalMs: 100,
      retryBaseMs: 50,
      retryMaxMs: 200
    }))
    return { vault, source }
  }

  it('is down before the first contact and ok after start', async () => {
    const { source } = await setup()
    expect(source.health()).toEqual({ state: 'down', detail: 'Vault not contacted yet', authenticated: false })
    await source.start()
    expect(source.health()).toEqual({ state: 'ok', authenticated: true })
  })

  it('recovers by itself after an outage, with no reads to drive it', async () => {
    const { vault, source } = await setup()
    await source.start()
    await vault.stop()
    await expectSecretError(source.read('secret/providers/kivra'), 'unavailable')
    expect(source.health().state).toBe('degraded')
    await vault.start()
    await waitFor('the probe to notice Vault is back', () => source.health().state === 'ok', { timeout: 3000 })
  })

  it('reports a 500 and a server that does not answer in time, and recovers from both', async () => {
    const { vault, source } = await setup()
    await source.start()
    vault.failWith(500)
    await expectSecretError(source.read('secret/providers/kivra'), 'unavailable')
    expect(source.health()).toEqual({ state: 'degraded', detail: 'Vault answered 500', authenticated: true })
    vault.failWith(undefined)
    await waitFor('recovery from the 500', () => source.health().state === 'ok', { timeout: 3000 })

    vault.hang(true)
    await expectSecretError(source.read('secret/providers/kivra'), 'unavailable')
    expect(source.health()).toEqual({ state: 'degraded', detail: 'Vault did not answer in time', authenticated: true })
    vault.hang(false)
    await waitFor('recovery from the hang', () => source.health().state === 'ok', { timeout: 3000 })
  })

  it('comes up degraded when Vault is down at start, and becomes ok once it is reachable', async () => {
    const { vault, source } = await setup()
    await vault.stop()
    await source.start()
    expect(source.health().state).toBe('degraded')
    await vault.start()
    await waitFor('the login retry', () => source.health().state === 'ok', { timeout: 3000 })
    expect((await source.read('secret/providers/kivra')).data.client_secret).toBe('x')
  })

  it('treats a standby node (sys/health 429) as reachable', async () => {
    const { vault, source } = await setup()
    await source.start()
    vault.seal()
    await expectSecretError(source.read('secret/providers/kivra'), 'unavailable')
    expect(source.health().detail).toBe('Vault is sealed')
    vault.unseal()
    vault.setStandby(true)
    await waitFor('recovery on a standby', () => source.health().state === 'ok', { timeout: 3000 })
  })

  it('sends the namespace with every call', async () => {
    const { vault, source } = await setup({ namespace: 'team-a' })
    await source.start()
    await source.read('secret/providers/kivra')
    await source.latestVersion('secret/providers/kivra')
    expect(vault.requests.map(request => request.namespace)).toEqual(['team-a', 'team-a', 'team-a'])
  })

  it('rejects a path without a mount before any call', async () => {
    const { vault, source } = await setup()
    await expectSecretError(source.read('no-slash'), 'invalid')
    await sleep(10)
    expect(vault.requests).toHaveLength(0)
  })
})
