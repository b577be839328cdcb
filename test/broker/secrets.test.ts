import { writeFileSync } from 'node:fs'
import { describe, expect, it, vi } from 'vitest'
import { BrokerError } from '../../src/errors.js'
import { createBrokerWorld, type BrokerWorld } from '../support/broker-world.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn, type KivraStandIn } from '../support/providers/index.js'
import { sleep } from '../../src/time.js'

const cleanup = useCleanup()

const oldSecret = { client_id: 'kivra-client', client_secret: 'old-secret' }
const newSecret = { client_id: 'kivra-client', client_secret: 'new-secret' }

async function setUp (secretInFile: Record<string, string>, checkIntervalMs = 3_600_000): Promise<{ world: BrokerWorld, kivra: KivraStandIn }> {
  const kivra = cleanup.add(await startKivraStandIn({ clientId: oldSecret.client_id, clientSecret: oldSecret.client_secret }))
  const world = cleanup.add(await createBrokerWorld({
    credentials: [{ id: 'kivra', provider: 'kivra', secret: 'secret/kivra', base_url: kivra.url }],
    secrets: { 'secret/kivra': secretInFile },
    replicas: 2,
    start: false,
    secretCheckIntervalMs: checkIntervalMs
  }))
  return { world, kivra }
}

function rotateFile (target: BrokerWorld, secret: Record<string, string>): void {
  writeFileSync(target.secretsFile, JSON.stringify({ 'secret/kivra': secret }))
}

describe('secret rotation', () => {
  it('a new secret version is seen within one check interval and re-mints once for the cluster', async () => {
    const { world, kivra } = await setUp(oldSecret, 200)
    const before = await world.replicas[0]!.broker.getToken('kivra', 60)
    expect(kivra.mints).toBe(1)

    kivra.secret = newSecret // the provider now accepts only the new secret...
    rotateFile(world, newSecret) // ...and Vault (here the file) has it as a new version
    await vi.waitFor(() => { expect(kivra.mints).toBe(2) }, { timeout: 3000, interval: 20 })
    await sleep(500) // both replicas saw the rotation by now
    expect(kivra.mints).toBe(2)
    expect(world.refreshes.filter(event => event.result === 'success').map(event => event.reason)).toEqual(['on_demand', 'rotation'])

    for (const replica of world.replicas) {
      const { grant } = await replica.broker.getToken('kivra', 60)
      expect(grant.accessToken).not.toBe(before.grant.accessToken)
      expect(replica.broker.statuses()[0]).toMatchObject({ secretVersion: 2, state: 'fresh' })
    }
  })
})

describe('wrong client credentials', () => {
  it('re-read the secret once; a newer version is used at once', async () => {
    const { world, kivra } = await setUp(oldSecret)
    const broker = world.replicas[0]!.broker
    await broker.getToken('kivra', 60) // holds version 1 (old)
    kivra.secret = newSecret
    rotateFile(world, newSecret) // written, but no check has run yet
    // The held grant is rejected by the provider; the report forces a refresh, whose mint fails with
    // 40104, re-reads Vault, finds version 2 and succeeds.
    const stale = (await broker.getToken('kivra', 60)).grant.accessToken
    const fresh = await broker.reportRejected('kivra', stale)
    expect(fresh.grant.accessToken).not.toBe(stale)
    expect(kivra.mintAttempts).toBe(3) // first mint, the rejected attempt, the retry with version 2
    expect(world.refreshes.map(event => event.result)).toEqual(['success', 'success'])
  })

  it('with no newer version: 502 with the provider code, then no provider calls until a rotation', async () => {
    const { world, kivra } = await setUp(oldSecret)
    const broker = world.replicas[0]!.broker
    kivra.secret = newSecret // rotated at the provider, not in Vault
    const failure = await broker.getToken('kivra', 60).catch((err: unknown) => err)
    expect(failure).toBeInstanceOf(BrokerError)
    expect(failure).toMatchObject({ code: 'CB_PROVIDER_REJECTED_CREDENTIALS', statusCode: 502, extensions: { provider_code: '40104' } })
    expect(kivra.mintAttempts).toBe(1)

    for (let i = 0; i < 5; i++) await expect(broker.getToken('kivra', 60)).rejects.toMatchObject({ code: 'CB_PROVIDER_REJECTED_CREDENTIALS' })
    expect(kivra.mintAttempts).toBe(1) // callers do not hammer a provider that rejects our secret
    expect(broker.statuses()[0]).toMatchObject({ state: 'failing', lastError: { kind: 'permanent', providerCode: '40104' } })

    rotateFile(world, newSecret)
    await world.replicas[0]!.secrets.check() // what the periodic check does
    await vi.waitFor(async () => { expect((await broker.getToken('kivra', 60)).source).not.toBe('error') }, { timeout: 3000 })
    expect(kivra.mints).toBe(1)
  })
})
