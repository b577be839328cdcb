import { afterAll, beforeAll, describe } from 'vitest'
import { detectRealVault, standInTarget, startRealVault, type RealVault } from '../support/vault/targets.js'
import { describeSecretSourceContract, vaultFixture } from './contract.js'

// Decided before collection, so a skipped real-Vault suite can say why in its name.
const real = await detectRealVault()

describeSecretSourceContract('Vault HTTP API stand-in', {
  kind: 'vault',
  capabilities: { seal: true, kubernetes: true, stopStart: true },
  create: async () => vaultFixture(await standInTarget())
})

const realTitle = real.available
  ? `real Vault (${real.source === 'VAULT_ADDR' ? 'VAULT_ADDR' : 'testcontainers, hashicorp/vault:1.17 dev mode'})`
  : `real Vault — skipped: ${real.reason}`

describe.skipIf(!real.available)(realTitle, () => {
  let vault: RealVault | undefined

  beforeAll(async () => {
    vault = await startRealVault(real)
  }, 300_000)

  afterAll(async () => {
    await vault?.stop()
  }, 60_000)

  describeSecretSourceContract('real Vault', {
    kind: 'vault',
    capabilities: real.capabilities,
    create: async () => {
      if (vault === undefined) throw new Error('the real Vault did not start')
      return vaultFixture(await vault.target())
    }
  })
})
