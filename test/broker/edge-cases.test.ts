import { describe, expect, it, vi } from 'vitest'
import { grantKey } from '../../src/broker/grant-identity.js'
import { CredentialSchema, type RefreshPolicy } from '../../src/config.js'
import { BrokerError } from '../../src/errors.js'
import type { Grant } from '../../src/providers/types.js'
import { createBrokerWorld, standInCredential, type BrokerWorld } from '../support/broker-world.js'
import { FakeClock } from '../support/fake-clock.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn, type KivraStandIn } from '../support/providers/index.js'
import { sleep } from '../../src/time.js'

const cleanup = useCleanup()

async function kivraWorld (options: { replicas?: number, lifetimeSeconds?: number, start?: boolean, refresh?: RefreshPolicy, stalledRenewals?: number[], brokerOptions?: NonNullable<Parameters<typeof createBrokerWorld>[0]['options']> } = {}): Promise<{ world: BrokerWorld, kivra: KivraStandIn }> {
  const kivra = cleanup.add(await startKivraStandIn({ lifetimeSeconds: options.lifetimeSeconds }))
  const world = cleanup.add(await createBrokerWorld({
    ...standInCredential(kivra, { id: 'kivra', provider: 'kivra', refresh: options.refresh }),
    replicas: options.replicas,
    start: options.start,
    options: options.brokerOptions,
    stalledRenewals: options.stalledRenewals
  }))
  return { world, kivra }
}

/** With this policy a grant is due at 95 % of its lifetime: one of 600 s with 40 s left is due in 10 s. */
const notDueFor10s: RefreshPolicy = { ratio: 0.99, margin_seconds: 0, jitter_ratio: 0 }
function lifetimeOf600sWith40sLeft (): Pick<Grant, 'obtainedAt' | 'expiresAt'> {
  const now = Date.now()
  return { obtainedAt: now - 560_000, expiresAt: now + 40_000 }
}

/** Writes a grant to the shared store as another replica would, under a lease of its own (kept until it lapses). */
async function seedGrant (replica: BrokerWorld['replicas'][number], standIn: KivraStandIn, accessToken: string, times: Pick<Grant, 'obtainedAt' | 'expiresAt'>, leaseMs = 50): Promise<string> {
  const key = grantKey(CredentialSchema.parse({ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: standIn.url }))
  const seed = await replica.store.acquireLease(key, leaseMs)
  expect(seed).not.toBeNull()
  await replica.store.putGrant(seed!, { accessToken, tokenType: 'Bearer', ...times })
  return key
}

describe('edge cases of the refresh engine', () => {
  it('a token that expires on arrival is a bad answer with backoff, not a refresh loop', async () => {
    const { kivra } = await kivraWorld({ lifetimeSeconds: 1 })
    await sleep(1500)
    expect(kivra.mints).toBeGreaterThanOrEqual(1)
    expect(kivra.mints).toBeLessThanOrEqual(3)
  })

  it('a replica waiting on another replica\'s lease hears at once that the refresh failed', async () => {
    const { world, kivra } = await kivraWorld({ replicas: 2, start: false, brokerOptions: { waitTimeoutMs: 3000 } })
    const [a, b] = world.replicas as [NonNullable<BrokerWorld['replicas'][0]>, NonNullable<BrokerWorld['replicas'][0]>]
    kivra.setFault({ kind: 'server-error', status: 503 })
    const first = a.broker.getToken('kivra', 60).catch((err: unknown) => err)
    await sleep(5)
    const started = Date.now()
    const second = await b.broker.getToken('kivra', 60).catch((err: unknown) => err)
    const waited = Date.now() - started
    expect(await first).toMatchObject({ code: 'CB_PROVIDER_UNAVAILABLE' })
    expect(second).toBeInstanceOf(BrokerError)
    expect((second as BrokerError).statusCode).toBe(503)
    expect(waited).toBeLessThan(1500)
  })

  it('a refresher fenced out by a later lease still answers with the valid token it minted', async () => {
    // Replica A renews nothing: to Redis it stalled past its lease.
    const { world, kivra } = await kivraWorld({ replicas: 2, start: false, refresh: notDueFor10s, stalledRenewals: [0], brokerOptions: { leaseTtlMs: 300, waitTimeoutMs: 5000 } })
    const [a, b] = world.replicas as [NonNullable<BrokerWorld['replicas'][0]>, NonNullable<BrokerWorld['replicas'][0]>]
    await seedGrant(a, kivra, 'old-token', lifetimeOf600sWith40sLeft())
    await sleep(60)

    kivra.setFault({ kind: 'latency', ms: 800 }, { times: 1 }) // A's mint outlives its 300 ms lease
    const fromA = a.broker.getToken('kivra', 60)
    await sleep(400)
    kivra.setFault({ kind: 'latency', ms: 700 }, { times: 1 }) // B takes the lease and is still minting when A returns
    const fromB = b.broker.getToken('kivra', 60)
    const answerA = await fromA
    expect(answerA.grant.accessToken).not.toBe('old-token')
    expect(kivra.isTokenValid(answerA.grant.accessToken)).toBe(true)
    expect(world.refreshes).toContainEqual(expect.objectContaining({ replica: 0, credentialId: 'kivra', result: 'fenced_out' }))
    expect(kivra.isTokenValid((await fromB).grant.accessToken)).toBe(true)
  })

  it('a caller that joined a background refresh which gave up on another replica\'s lease keeps waiting, and gets a token', async () => {
    const { world, kivra } = await kivraWorld({ start: false, brokerOptions: { leaseTtlMs: 300, waitTimeoutMs: 5000 } })
    const a = world.replicas[0]!
    // A due grant (8 h lifetime, 30 s left), written by "another replica" whose lease (1 s) outlasts a
    // background refresh's patience (one 300 ms lease period).
    const now = Date.now()
    await seedGrant(a, kivra, 'old-token', { obtainedAt: now - 28_770_000, expiresAt: now + 30_000 }, 1000)
    await a.broker.start() // the grant is due: a proactive refresh starts, finds the lease taken and waits
    await sleep(20)
    const started = Date.now()
    const answer = await a.broker.getToken('kivra', 60) // joins it, with 5 s of patience of its own
    expect(Date.now() - started).toBeGreaterThan(400) // it outwaited the background refresh, which gave up
    expect(answer.grant.accessToken).not.toBe('old-token')
    expect(kivra.isTokenValid(answer.grant.accessToken)).toBe(true)
    expect(kivra.mints).toBe(1)
  })

  it('a caller that joined a background refresh waits no longer than its wait timeout in all, and its own mint finishes without it', async () => {
    const { world, kivra } = await kivraWorld({ start: false, brokerOptions: { leaseTtlMs: 300, waitTimeoutMs: 600 } })
    const a = world.replicas[0]!
    const now = Date.now()
    await seedGrant(a, kivra, 'old-token', { obtainedAt: now - 28_770_000, expiresAt: now + 30_000 }, 400)
    kivra.setFault({ kind: 'latency', ms: 900 }, { times: 1 })
    await a.broker.start() // a proactive refresh waits on the seed's lease, gives up after 300 ms
    await sleep(20)
    const started = Date.now()
    // Joins; once the background refresh gives up it takes the lapsed lease itself and mints (900 ms).
    const answer = await a.broker.getToken('kivra', 60).catch((err: unknown) => err)
    const waited = Date.now() - started
    expect(answer).toMatchObject({ code: 'CB_REFRESH_TIMEOUT', statusCode: 503 })
    expect(waited).toBeLessThan(900) // 600 ms in all, not 600 ms plus its own mint
    // The mint it started goes on and is shared: the next caller gets that token, with no second mint.
    await vi.waitFor(() => { expect(kivra.mints).toBe(1) }, { timeout: 3000 })
    const next = await a.broker.getToken('kivra', 60)
    expect(kivra.isTokenValid(next.grant.accessToken)).toBe(true)
    expect(kivra.mints).toBe(1)
  })

  it('a cold start of more than ten concurrent mints prints no listener-leak warning', async () => {
    const kivra = cleanup.add(await startKivraStandIn())
    kivra.setFault({ kind: 'latency', ms: 200 }, { times: 12 }) // so the 12 warm-up mints overlap
    const warnings: string[] = []
    const onWarning = (warning: Error): void => { warnings.push(warning.name) }
    process.on('warning', onWarning)
    try {
      cleanup.add(await createBrokerWorld({
        credentials: Array.from({ length: 12 }, (_, i) => ({ id: `k${i}`, provider: 'kivra' as const, secret: 'secret/kivra', base_url: kivra.url })),
        secrets: { 'secret/kivra': { ...kivra.secret } }
      }))
      await vi.waitFor(() => { expect(kivra.mints).toBe(12) }, { timeout: 5000 })
      await sleep(250)
    } finally {
      process.off('warning', onWarning)
    }
    expect(warnings).not.toContain('MaxListenersExceededWarning')
  })

  it('a min_ttl close to the whole lifetime answers 422 instead of minting on every request', async () => {
    const clock = new FakeClock()
    const kivra = cleanup.add(await startKivraStandIn({ lifetimeSeconds: 100, now: clock.now }))
    const world = cleanup.add(await createBrokerWorld({
      ...standInCredential(kivra, { id: 'kivra', provider: 'kivra' }),
      clock,
      start: false
    }))
    const broker = world.replicas[0]!.broker
    expect((await broker.getToken('kivra', 95)).source).toBe('refreshed') // a fresh grant has 100 s
    for (let i = 0; i < 10; i++) {
      clock.advance(10_000)
      await expect(broker.getToken('kivra', 95)).rejects.toMatchObject({ code: 'CB_MIN_TTL_UNSATISFIABLE', statusCode: 422 })
    }
    expect(kivra.mints).toBeLessThanOrEqual(2) // the first grant, and at most one proactive refresh
  })
})
