import { describe, expect, it } from 'vitest'
import type { IssuedToken } from '../../src/broker/types.js'
import { BrokerError } from '../../src/errors.js'
import { createBrokerWorld, standInCredential, type BrokerWorld } from '../support/broker-world.js'
import { FakeClock } from '../support/fake-clock.js'
import { useCleanup } from '../support/fixtures.js'
import { waitFor } from '../support/wait.js'
import { sleep } from '../../src/time.js'
import { startKigoStandIn, startKivraStandIn, type KigoStandIn, type KivraStandIn } from '../support/providers/index.js'

const cleanup = useCleanup()
let kigo: KigoStandIn | undefined
let kivra: KivraStandIn | undefined

const alice = { external_user_id: 'user-alice', user_email: 'alice@example.test', external_program_id: 'program-1' }
const bob = { external_user_id: 'user-bob', user_email: 'bob@example.test', brand_identifier: 'brand-1' }

async function kigoWorld (options: { replicas?: number, clock?: FakeClock, cached?: number } = {}): Promise<BrokerWorld> {
  kigo = cleanup.add(await startKigoStandIn({ now: options.clock?.now, userLifetimeSeconds: 1800 }))
  return cleanup.add(await createBrokerWorld({
    ...standInCredential(kigo, { id: 'kigo', provider: 'kigo', ...(options.cached === undefined ? {} : { user_sessions: { lifetime_seconds: 1800, cached: options.cached } }) }),
    replicas: options.replicas ?? 3,
    clock: options.clock
  }))
}

describe('Kigo user sessions', () => {
  it('50 concurrent requests for one user across 3 replicas make one session; a repeat with enough life makes none, on any replica', async () => {
    const w = await kigoWorld()
    const answers = await Promise.all(Array.from({ length: 50 }, async (_, i) => await w.replicas[i % 3]!.broker.userSession('kigo', alice, 60)))
    expect(kigo!.attempts('accounts')).toBe(1)
    expect(new Set(answers.map(answer => answer.grant.accessToken)).size).toBe(1)
    const token = answers[0]!.grant.accessToken
    expect(kigo!.isTokenValid(token)).toBe(true)
    expect(kigo!.userSessions[0]).toMatchObject({ externalUserId: 'user-alice', userEmail: 'alice@example.test', programOrBrand: 'program-1' })
    for (const replica of w.replicas) expect((await replica.broker.userSession('kigo', alice, 60)).grant.accessToken).toBe(token)
    expect(kigo!.attempts('accounts')).toBe(1)
    // Made with the partner token, minted once for the cluster; the caller never sees the partner token.
    expect(kigo!.mints).toBe(1)
    expect(kigo!.tokenInfo(token)?.endpoint).toBe('accounts')
  })

  it('two users get two sessions, independent of the partner token a caller would get', async () => {
    const w = await kigoWorld({ replicas: 2 })
    const [a, b] = await Promise.all([w.replicas[0]!.broker.userSession('kigo', alice), w.replicas[1]!.broker.userSession('kigo', bob)])
    expect(a.grant.accessToken).not.toBe(b.grant.accessToken)
    expect(kigo!.attempts('accounts')).toBe(2)
    const partner = await w.replicas[0]!.broker.getToken('kigo', 60)
    expect([a.grant.accessToken, b.grant.accessToken]).not.toContain(partner.grant.accessToken)
  })

  it('near expiry, one refresh with the refresh token renews the session for every replica', async () => {
    const clock = new FakeClock()
    const w = await kigoWorld({ clock })
    const first = await w.replicas[0]!.broker.userSession('kigo', alice, 60)
    expect(first.grant.expiresAt - clock.now()).toBe(1800_000)
    clock.advance(1780_000) // 20 s left: less than min_ttl 60
    const renewed = await Promise.all(w.replicas.map(async replica => await replica.broker.userSession('kigo', alice, 60)))
    expect(kigo!.attempts('account-refresh')).toBe(1)
    expect(kigo!.attempts('accounts')).toBe(1)
    expect(new Set(renewed.map(answer => answer.grant.accessToken)).size).toBe(1)
    expect(renewed[0]!.grant.accessToken).not.toBe(first.grant.accessToken)
    expect(renewed[0]!.grant.expiresAt - clock.now()).toBe(1800_000)
  })

  it('a refused refresh token falls back to a new session', async () => {
    const clock = new FakeClock()
    const w = await kigoWorld({ replicas: 1, clock })
    await w.replicas[0]!.broker.userSession('kigo', alice, 60)
    kigo!.setFault({ kind: 'server-error', status: 401 }, { endpoint: 'account-refresh', times: 1 })
    clock.advance(1780_000)
    const renewed = await w.replicas[0]!.broker.userSession('kigo', alice, 60)
    expect(kigo!.attempts('account-refresh')).toBe(1)
    expect(kigo!.attempts('accounts')).toBe(2)
    expect(kigo!.isTokenValid(renewed.grant.accessToken)).toBe(true)
  })

  it('a 401 on the accounts call (the partner token expired at Kigo) re-mints the partner token once and retries', async () => {
    const w = await kigoWorld()
    await w.replicas[0]!.broker.getToken('kigo', 60) // the partner token, held by every replica after the notice
    kigo!.revokePartnerTokens()
    const answers = await Promise.all([alice, bob, alice, bob].map(async (user, i) => await w.replicas[i % 3]!.broker.userSession('kigo', user)))
    expect(kigo!.mints).toBe(2) // the first partner token and one replacement, for the whole cluster
    expect(kigo!.attempts('accounts')).toBe(4) // alice and bob: each refused once, then made
    for (const answer of answers) expect(kigo!.isTokenValid(answer.grant.accessToken)).toBe(true)
  })

  it('keeps at most user_sessions.cached sessions in memory; a forgotten one is read back from Redis, not made again', async () => {
    const w = await kigoWorld({ replicas: 1, cached: 20 })
    const broker = w.replicas[0]!.broker
    const users = Array.from({ length: 300 }, (_, i) => ({ external_user_id: `user-${i}`, user_email: `u${i}@example.test`, brand_identifier: 'brand-1' }))
    const tokens = new Map<string, string>()
    for (let i = 0; i < users.length; i += 30) {
      const batch = await Promise.all(users.slice(i, i + 30).map(async user => await broker.userSession('kigo', user)))
      batch.forEach((answer, j) => tokens.set(users[i + j]!.external_user_id, answer.grant.accessToken))
    }
    expect(kigo!.attempts('accounts')).toBe(300)
    expect(broker.statuses()[0]?.userSessionsCached).toBeLessThanOrEqual(20)
    const again = await broker.userSession('kigo', users[0]!)
    expect(again.source).toBe('store')
    expect(again.grant.accessToken).toBe(tokens.get('user-0'))
    expect(kigo!.attempts('accounts')).toBe(300)
  })

  it('refuses user sessions on a credential that is not Kigo (409), and Kigo refusing the details is a 502 that is not cached for the user', async () => {
    kivra = cleanup.add(await startKivraStandIn())
    kigo = cleanup.add(await startKigoStandIn())
    const world = cleanup.add(await createBrokerWorld({
      credentials: [
        { id: 'kivra', provider: 'kivra', secret: 'secret/kivra', base_url: kivra.url },
        { id: 'kigo', provider: 'kigo', secret: 'secret/kigo', base_url: kigo.url }
      ],
      secrets: { 'secret/kivra': { ...kivra.secret }, 'secret/kigo': { ...kigo.secret } }
    }))
    const broker = world.replicas[0]!.broker
    await expect(broker.userSession('kivra', alice)).rejects.toMatchObject({ code: 'CB_UNSUPPORTED_OPERATION', statusCode: 409 })
    kigo.setFault({ kind: 'server-error', status: 400 }, { endpoint: 'accounts', times: 1 })
    const refused = await broker.userSession('kigo', alice).catch((err: unknown) => err)
    expect(refused).toBeInstanceOf(BrokerError)
    expect(refused).toMatchObject({ code: 'CB_USER_SESSION_REFUSED', statusCode: 502 })
    expect(JSON.stringify(refused)).not.toContain('alice@example.test')
  })
})

describe('scoped grants', () => {
  async function kivraWorld (replicas = 2, extra: Record<string, unknown> = {}): Promise<BrokerWorld> {
    kivra = cleanup.add(await startKivraStandIn())
    return cleanup.add(await createBrokerWorld({
      ...standInCredential(kivra, { id: 'kivra', provider: 'kivra', scope: 'kivra.v1.tenant.abc.*', allowed_scopes: ['post:kivra.v1.tenant.abc.content', 'get:kivra.v1.tenant.abc.content'], ...extra }),
      replicas
    }))
  }

  it('a narrower scope is its own grant, minted with that scope, shared by the replicas, independent of the default grant', async () => {
    const w = await kivraWorld()
    const [scopedA, scopedB] = await Promise.all(w.replicas.map(async replica => await replica.broker.getToken('kivra', 60, { scope: 'post:kivra.v1.tenant.abc.content' }))) as [IssuedToken, IssuedToken]
    const unscoped = await w.replicas[0]!.broker.getToken('kivra', 60)
    expect(scopedA.grant.accessToken).toBe(scopedB.grant.accessToken)
    expect(unscoped.grant.accessToken).not.toBe(scopedA.grant.accessToken)
    // The answer's scope is what the provider granted.
    expect(scopedA.grant.scope).toBe('post:kivra.v1.tenant.abc.content')
    expect(kivra!.tokenInfo(scopedA.grant.accessToken)?.scope).toBe('post:kivra.v1.tenant.abc.content')
    expect(kivra!.tokenInfo(unscoped.grant.accessToken)?.scope).toBe('kivra.v1.tenant.abc.*')
    expect(kivra!.mints).toBe(2)
  })

  it('equal scope sets share one grant however they are written; the credential\'s own scope is its default grant', async () => {
    const w = await kivraWorld(1)
    const broker = w.replicas[0]!.broker
    const a = await broker.getToken('kivra', 60, { scope: 'post:kivra.v1.tenant.abc.content get:kivra.v1.tenant.abc.content' })
    const b = await broker.getToken('kivra', 60, { scope: '  get:kivra.v1.tenant.abc.content  post:kivra.v1.tenant.abc.content post:kivra.v1.tenant.abc.content' })
    expect(b.grant.accessToken).toBe(a.grant.accessToken)
    const own = await broker.getToken('kivra', 60, { scope: 'kivra.v1.tenant.abc.*' })
    expect(own.grant.accessToken).toBe((await broker.getToken('kivra', 60)).grant.accessToken)
    expect(kivra!.mints).toBe(2)
  })

  it('a scope not in allowed_scopes is 403 and mints nothing; scopes on a provider without them are 409', async () => {
    const w = await kivraWorld(1)
    const broker = w.replicas[0]!.broker
    await expect(broker.getToken('kivra', 60, { scope: 'post:kivra.v1.tenant.abc.content post:kivra.v1.tenant.other.content' }))
      .rejects.toMatchObject({ code: 'CB_SCOPE_NOT_ALLOWED', statusCode: 403 })
    expect(kivra!.mintAttempts).toBe(0)
    kigo = cleanup.add(await startKigoStandIn())
    const other = cleanup.add(await createBrokerWorld({ ...standInCredential(kigo, { id: 'kigo', provider: 'kigo' }) }))
    await expect(other.replicas[0]!.broker.getToken('kigo', 60, { scope: 'anything' })).rejects.toMatchObject({ code: 'CB_UNSUPPORTED_OPERATION', statusCode: 409 })
  })

  it('past max_scoped_grants a new scope set is 429 CB_SCOPED_GRANT_LIMIT, with nothing minted', async () => {
    const w = await kivraWorld(1, { max_scoped_grants: 1 })
    const broker = w.replicas[0]!.broker
    await broker.getToken('kivra', 60, { scope: 'post:kivra.v1.tenant.abc.content' })
    const attempts = kivra!.mintAttempts
    await expect(broker.getToken('kivra', 60, { scope: 'get:kivra.v1.tenant.abc.content' })).rejects.toMatchObject({ code: 'CB_SCOPED_GRANT_LIMIT', statusCode: 429 })
    expect(kivra!.mintAttempts).toBe(attempts)
  })

  it('a scoped grant is refreshed while it is asked for, and left to expire once it is not', async () => {
    const clock = new FakeClock()
    kivra = cleanup.add(await startKivraStandIn({ now: clock.now, lifetimeSeconds: 600 }))
    const world = cleanup.add(await createBrokerWorld({
      ...standInCredential(kivra, { id: 'kivra', provider: 'kivra', allowed_scopes: ['post:a'], refresh: { ratio: 0.5, margin_seconds: 0, jitter_ratio: 0 } }),
      clock,
      options: { pacing: false }
    }))
    const broker = world.replicas[0]!.broker
    clock.advance(0)
    await broker.getToken('kivra', 60, { scope: 'post:a' })
    const scopedMints = (): number => kivra!.requests.filter(request => request.endpoint === 'mint' && request.body.includes('scope=post%3Aa')).length
    expect(scopedMints()).toBe(1)
    // Asked for during its first life: refreshed at its planned time.
    clock.advance(200_000)
    await broker.getToken('kivra', 60, { scope: 'post:a' })
    clock.advance(100_000)
    await waitUntilSettled(broker)
    expect(scopedMints()).toBe(2)
    // Not asked for during its second life: not refreshed again, and forgotten.
    clock.advance(600_000)
    await waitUntilSettled(broker)
    expect(scopedMints()).toBe(2)
  })
})

/** Lets proactive refreshes that fell due finish (they run on real timers and real HTTP). */
async function waitUntilSettled (broker: BrokerWorld['replicas'][number]['broker']): Promise<void> {
  await waitFor('no refresh running', () => !broker.statuses().some(status => status.state === 'refreshing'), { timeout: 2000, interval: 10 })
  await sleep(50)
}
