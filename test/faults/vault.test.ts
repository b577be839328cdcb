import { describe, expect, it } from 'vitest'
import { clusterApiKey, startBrokerCluster } from '../support/cluster.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn, type KivraStandIn } from '../support/providers/index.js'
import { testRedisUrl } from '../support/redis.js'
import { startVaultStandIn, type VaultStandIn } from '../support/vault/stand-in.js'
import { describeProblems, faultEnv, firstFreshAnswer, judge, readiness, reportRecovery, startLoad } from './harness.js'
import { waitFor } from '../support/wait.js'

const lifetimeSeconds = 5

describe('fault: Vault (stand-in) is sealed and unsealed under load', () => {
  const cleanup = useCleanup()

  /** The Vault stand-in holding the Kivra stand-in's secret, and a token that may read it. */
  async function vaultHoldingKivra (tokenLifetimeSeconds: number): Promise<{ vault: VaultStandIn, kivra: KivraStandIn, vaultToken: string }> {
    const vault = cleanup.add(await startVaultStandIn())
    const kivra = cleanup.add(await startKivraStandIn({ lifetimeSeconds: tokenLifetimeSeconds }))
    vault.writeSecret('secret/kivra', { ...kivra.secret })
    vault.createPolicy('kivra-read', ['secret/data/kivra', 'secret/metadata/kivra'])
    const vaultToken = vault.createToken({ ttlSeconds: 3600, renewable: true, policies: ['default', 'kivra-read'] })
    return { vault, kivra, vaultToken }
  }

  it('refreshes on with the secrets held in memory, says degraded, and is ready again after the unseal', async () => {
    const { vault, kivra, vaultToken } = await vaultHoldingKivra(lifetimeSeconds)
    const cluster = cleanup.add(await startBrokerCluster({
      replicas: 2,
      redisUrl: testRedisUrl(),
      credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, timeout_ms: 1000, refresh: { ratio: 0.75, margin_seconds: 0, jitter_ratio: 0.05 } }],
      // The secrets file of the cluster is ignored once VAULT_ADDR is set: the secret comes from Vault.
      secrets: {},
      env: { ...faultEnv, VAULT_ADDR: vault.url, VAULT_AUTH: 'token', VAULT_TOKEN: vaultToken, SECRET_CHECK_INTERVAL_SECONDS: '5' }
    }))
    const standIn = kivra
    const sealable = vault
    const processes = cluster.processes
    const load = startLoad(processes, 'kivra', { maxDurationMs: 90_000 })
    await waitFor('a first token', () => load.answers.some(answer => answer.status === 200), { timeout: 10_000, interval: 100 })
    expect(await Promise.all(processes.map(readiness))).toEqual(['ready', 'ready'])

    sealable.seal()
    const sealedAt = Date.now()
    const mintsAtSeal = standIn.mints
    const readinessWhileSealed = new Set<string>()
    await waitFor('the seal to last 9 s', async () => {
      for (const process of processes) readinessWhileSealed.add(await readiness(process))
      return Date.now() - sealedAt >= 9000
    }, { timeout: 20_000, interval: 500 })
    const mintsWhileSealed = standIn.mints - mintsAtSeal
    sealable.unseal()
    const unsealedAt = Date.now()

    await waitFor('every process ready again', async () => (await Promise.all(processes.map(readiness))).every(status => status === 'ready'), { timeout: 30_000, interval: 200 })
    const readyAt = Date.now()
    await waitFor('fresh tokens from every process', () => processes.every((_, index) => firstFreshAnswer(load.answers, standIn, unsealedAt, index) !== undefined), { timeout: 20_000, interval: 100 })
    const answers = await load.stop()

    const verdict = judge(answers, standIn)
    reportRecovery({
      fault: 'vault-seal-unseal',
      recoveryMs: readyAt - unsealedAt,
      measuredAs: 'Vault unsealed → every process reports ready',
      requests: verdict.total,
      ok: verdict.ok,
      unavailable503: verdict.unavailable,
      mints: standIn.mints,
      details: {
        sealedMs: unsealedAt - sealedAt,
        lifetimeSeconds,
        mintsWhileSealed,
        readinessWhileSealed: [...readinessWhileSealed],
        notOk: answers.filter(answer => answer.status !== 200).map(answer => ({ status: answer.status, code: answer.code, afterSealMs: answer.receivedAt - sealedAt, tookMs: answer.receivedAt - answer.sentAt })).slice(0, 20),
        firstFreshAnswerAfterUnsealMs: (firstFreshAnswer(answers, standIn, unsealedAt)?.receivedAt ?? Number.NaN) - unsealedAt
      }
    })

    expect(mintsWhileSealed, 'refreshes went on with the secret held in memory').toBeGreaterThan(0)
    expect(readinessWhileSealed.has('degraded'), 'readiness said degraded while Vault was sealed').toBe(true)
    expect(describeProblems(verdict)).toBe('')
    expect(verdict.expired).toEqual([])
    expect(verdict.belowMinTtl).toEqual([])
    expect(verdict.overstated.map(answer => answer.overstatedMs)).toEqual([])
    expect(processes.every(process => process.child.exitCode === null)).toBe(true)
  }, 90_000)

  // Every replica reads every configured secret at start, so whichever replica holds the lease when
  // Vault is sealed can refresh with the secret it holds (not only the replica that minted first).
  it('every replica can refresh while Vault is sealed, not only the one that read the secret', async () => {
    const { vault, kivra, vaultToken } = await vaultHoldingKivra(60)
    const cluster = cleanup.add(await startBrokerCluster({
      replicas: 2,
      redisUrl: testRedisUrl(),
      credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, timeout_ms: 1000 }],
      secrets: {},
      env: { ...faultEnv, VAULT_ADDR: vault.url, VAULT_AUTH: 'token', VAULT_TOKEN: vaultToken }
    }))
    const standIn = kivra
    // One replica minted at start (and read the secret); the other adopted that grant.
    await waitFor('the cold-start mint', () => standIn.mints >= 1, { timeout: 10_000, interval: 100 })
    vault.seal()
    const statuses: number[] = []
    for (const process of cluster.processes) {
      const response = await fetch(`${process.url}/v1/admin/credentials/kivra/refresh`, { method: 'POST', headers: { authorization: `Bearer ${clusterApiKey}-admin` } })
      statuses.push(response.status)
      await response.arrayBuffer()
    }
    expect(statuses).toEqual([200, 200])
  }, 30_000)
})
