import { describe, expect, it } from 'vitest'
import { grantKey } from '../../src/broker/grant-identity.js'
import { CredentialSchema } from '../../src/config.js'
import { BrokerError } from '../../src/errors.js'
import { createBrokerWorld, standInCredential, type BrokerWorld } from '../support/broker-world.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn, startKlaviStandIn } from '../support/providers/index.js'

const cleanup = useCleanup()

describe('rejection reports', () => {
  it('a caller reporting every token it gets cannot drive the provider: one refresh per interval, then 429', async () => {
    const kivra = cleanup.add(await startKivraStandIn())
    const world = cleanup.add(await createBrokerWorld({
      ...standInCredential(kivra, { id: 'kivra', provider: 'kivra' }),
      start: false
    }))
    const broker = world.replicas[0]!.broker
    let { grant } = await broker.getToken('kivra', 60)
    grant = (await broker.reportRejected('kivra', grant.accessToken)).grant
    expect(kivra.mints).toBe(2)
    for (let i = 0; i < 20; i++) {
      const outcome = await broker.reportRejected('kivra', grant.accessToken).catch((err: unknown) => err)
      expect(outcome).toBeInstanceOf(BrokerError)
      expect(outcome).toMatchObject({ code: 'CB_RATE_LIMITED', statusCode: 429 })
      expect((outcome as BrokerError).retryAfterSeconds).toBeGreaterThanOrEqual(1)
    }
    expect(kivra.mints).toBe(2)
  })

  it('a rejected token is not served again when no new one can be had', async () => {
    const kivra = cleanup.add(await startKivraStandIn())
    const world = cleanup.add(await createBrokerWorld({
      ...standInCredential(kivra, { id: 'kivra', provider: 'kivra' }),
      replicas: 2,
      start: false
    }))
    const [a, b] = world.replicas as [NonNullable<BrokerWorld['replicas'][0]>, NonNullable<BrokerWorld['replicas'][0]>]
    const { grant } = await a.broker.getToken('kivra', 60)
    await b.broker.getToken('kivra', 60)
    const key = grantKey(CredentialSchema.parse({ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url }))
    expect((await b.store.get(key))?.grant.accessToken).toBe(grant.accessToken)
    kivra.setFault({ kind: 'server-error', status: 503 })
    await expect(a.broker.reportRejected('kivra', grant.accessToken)).rejects.toMatchObject({ code: 'CB_PROVIDER_UNAVAILABLE' })
    // Neither this replica nor one that reads the store afresh hands the rejected token out again.
    await expect(a.broker.getToken('kivra', 60)).rejects.toMatchObject({ statusCode: 503 })
    expect(await b.store.get(key)).toBeNull()
  })

  it('Klavi: a rejected token is replaced by a mint, and a refused /refresh falls back to minting', async () => {
    const klavi = cleanup.add(await startKlaviStandIn())
    const world = cleanup.add(await createBrokerWorld({
      ...standInCredential(klavi, { id: 'klavi', provider: 'klavi' }),
      start: false
    }))
    const broker = world.replicas[0]!.broker
    const first = await broker.getToken('klavi', 60)
    const replaced = await broker.reportRejected('klavi', first.grant.accessToken)
    expect(klavi.tokenInfo(replaced.grant.accessToken)?.endpoint).toBe('mint')
    // Klavi documents 403/409/416 besides 401: none of them is about the client secret.
    klavi.setFault({ kind: 'wrong-credentials' }, { endpoint: 'refresh' })
    const forced = await broker.forceRefresh('klavi')
    expect(klavi.tokenInfo(forced.grant.accessToken)?.endpoint).toBe('mint')
    expect(broker.statuses()[0]).toMatchObject({ state: 'fresh', consecutiveFailures: 0 })
  })
})
