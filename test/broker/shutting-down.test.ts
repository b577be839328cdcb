import { describe, expect, it } from 'vitest'
import { createBrokerWorld, standInCredential } from '../support/broker-world.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn } from '../support/providers/index.js'

const cleanup = useCleanup()

describe('a broker that is shutting down', () => {
  it('answers a caller who needs a new grant 503 CB_NOT_READY with Retry-After, and calls no provider', async () => {
    const kivra = cleanup.add(await startKivraStandIn())
    const world = cleanup.add(await createBrokerWorld({ ...standInCredential(kivra, { id: 'kivra', provider: 'kivra' }), start: false }))
    const replica = world.replicas[0]!
    await replica.broker.close()
    const answer = await replica.broker.getToken('kivra', 60).catch((err: unknown) => err)
    expect(answer).toMatchObject({ code: 'CB_NOT_READY', statusCode: 503, retryAfterSeconds: 1 })
    expect(kivra.mints).toBe(0)
  })
})
