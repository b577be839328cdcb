import { describe, expect, it } from 'vitest'
import { sleep } from '../../src/time.js'
import { createBrokerWorld, type BrokerWorld } from '../support/broker-world.js'
import { useCleanup } from '../support/fixtures.js'
import { waitFor } from '../support/wait.js'
import { startKivraStandIn, type KivraStandIn } from '../support/providers/index.js'
import { startVaultStandIn, type VaultStandIn } from '../support/vault/stand-in.js'

const cleanup = useCleanup()

const path = 'secret/providers/kivra'

/**
 * Three replicas reading the Kivra secret from Vault; version 1 is the secret Kivra accepts. `vaultAge`
 * shifts the Vault stand-in's clock (its versions' created_time) by that many ms into the past.
 */
async function rolloverWorld (options: { window?: number, vaultAgeMs?: () => number } = {}): Promise<{ world: BrokerWorld, kivra: KivraStandIn, vault: VaultStandIn }> {
  const kivra = cleanup.add(await startKivraStandIn())
  const vault = cleanup.add(await startVaultStandIn({ now: () => Date.now() - (options.vaultAgeMs?.() ?? 0) }))
  vault.writeSecret(path, { ...kivra.secret } as Record<string, string>)
  const world = cleanup.add(await createBrokerWorld({
    credentials: [{ id: 'kivra', provider: 'kivra', secret: path, base_url: kivra.url, ...(options.window === undefined ? {} : { rollover_window_seconds: options.window }) }],
    secrets: {},
    vault: { addr: vault.url, token: vault.rootToken },
    replicas: 3
  }))
  return { world, kivra, vault }
}

/** Every replica looks for new versions now (what the periodic rotation check does). */
async function checkRotations (target: BrokerWorld): Promise<void> {
  await Promise.all(target.replicas.map(async replica => { await replica.secrets.check() }))
  await waitFor('no refresh running', () => !target.replicas.some(replica => replica.broker.statuses()[0]?.state === 'refreshing'), { timeout: 2000, interval: 10 })
  await sleep(0)
}

describe('secret rollover', () => {
  it('a new version the provider rejects: tokens keep flowing on the previous one, the status says rolled back, and a newer version is used as soon as it appears', async () => {
    const { world, kivra, vault } = await rolloverWorld()
    const first = await world.replicas[0]!.broker.getToken('kivra', 60)
    expect(first.grant.secretVersion).toBe(1)

    vault.writeSecret(path, { client_id: kivra.secret.client_id as string, client_secret: 'a-typo' })
    await checkRotations(world)
    for (const replica of world.replicas) {
      const { grant } = await replica.broker.forceRefresh('kivra')
      expect(kivra.isTokenValid(grant.accessToken)).toBe(true)
      expect(grant.secretVersion).toBe(1)
      expect(grant.secretRolledBackFrom).toBe(2)
      expect(replica.broker.statuses()[0]).toMatchObject({ secretVersion: 1, secretRolledBack: true, consecutiveFailures: 0 })
    }
    expect(world.refreshes.filter(event => event.result === 'permanent_error')).toEqual([])
    const served = await world.replicas[2]!.broker.getToken('kivra', 60)
    expect(kivra.isTokenValid(served.grant.accessToken)).toBe(true)

    vault.writeSecret(path, { ...kivra.secret } as Record<string, string>)
    await checkRotations(world)
    const fixed = await world.replicas[1]!.broker.getToken('kivra', 60)
    expect(fixed.grant.secretVersion).toBe(3)
    expect(fixed.grant.secretRolledBackFrom).toBeUndefined()
    expect(world.replicas[1]!.broker.statuses()[0]).toMatchObject({ secretVersion: 3, secretRolledBack: false })
  })

  it('no rollover for a version older than rollover_window_seconds: the rejection is surfaced', async () => {
    let ageMs = 0
    const { world, kivra, vault } = await rolloverWorld({ window: 3600, vaultAgeMs: () => ageMs })
    await world.replicas[0]!.broker.getToken('kivra', 60)
    ageMs = 2 * 3600_000 // version 2 is written "two hours ago"
    vault.writeSecret(path, { client_id: kivra.secret.client_id as string, client_secret: 'revoked-long-ago' })
    ageMs = 0
    await checkRotations(world)
    await expect(world.replicas[0]!.broker.forceRefresh('kivra')).rejects.toMatchObject({ code: 'CB_PROVIDER_REJECTED_CREDENTIALS' })
    expect(world.replicas[0]!.broker.statuses()[0]?.secretRolledBack).toBe(false)
  })

  it('no rollover when the previous version was deleted or destroyed, nor when the window is 0', async () => {
    const { world, kivra, vault } = await rolloverWorld()
    await world.replicas[0]!.broker.getToken('kivra', 60)
    vault.retireVersion(path, 1, 'destroy')
    vault.writeSecret(path, { client_id: kivra.secret.client_id as string, client_secret: 'a-typo' })
    await checkRotations(world)
    await expect(world.replicas[0]!.broker.forceRefresh('kivra')).rejects.toMatchObject({ code: 'CB_PROVIDER_REJECTED_CREDENTIALS' })

    const again = await rolloverWorld({ window: 0 })
    await again.world.replicas[0]!.broker.getToken('kivra', 60)
    again.vault.writeSecret(path, { client_id: again.kivra.secret.client_id as string, client_secret: 'a-typo' })
    await checkRotations(again.world)
    await expect(again.world.replicas[0]!.broker.forceRefresh('kivra')).rejects.toMatchObject({ code: 'CB_PROVIDER_REJECTED_CREDENTIALS' })
  })
})
