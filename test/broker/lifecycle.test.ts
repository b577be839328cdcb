import { Redis } from 'ioredis'
import { describe, expect, it, vi } from 'vitest'
import { BrokerError } from '../../src/errors.js'
import type { IssuedToken } from '../../src/broker/types.js'
import { createBrokerWorld, standInCredential, type BrokerWorld, type BrokerWorldOptions } from '../support/broker-world.js'
import { FakeClock } from '../support/fake-clock.js'
import { useCleanup } from '../support/fixtures.js'
import { startKigoStandIn, startKivraStandIn, startKlaviStandIn, type KigoStandIn, type ProviderStandIn } from '../support/providers/index.js'
import { spawnRedisServer } from '../support/redis-server.js'
import { sleep } from '../../src/time.js'

const cleanup = useCleanup()

/** Provider calls that produced a token (mint, or Klavi's refresh), at the stand-in's (fake) time. */
function issuances (provider: ProviderStandIn): number[] {
  return provider.requests.filter(request => request.endpoint === 'mint' || request.endpoint === 'refresh').map(request => request.at)
}

/** A Kigo stand-in (30 min tokens) and a world serving it as credential "kigo", both on one fake clock. */
async function kigoWorld (options: Pick<BrokerWorldOptions, 'replicas' | 'start' | 'redisUrl'>): Promise<{ clock: FakeClock, kigo: KigoStandIn, world: BrokerWorld }> {
  const clock = new FakeClock()
  const kigo = cleanup.add(await startKigoStandIn({ now: clock.now }))
  const world = cleanup.add(await createBrokerWorld({
    ...standInCredential(kigo, { id: 'kigo', provider: 'kigo', lifetime_seconds: 1800 }),
    clock,
    ...options
  }))
  return { clock, kigo, world }
}

/** Waits until no replica has a refresh in flight, then lets pub/sub notices land. */
async function settle (target: BrokerWorld): Promise<void> {
  await vi.waitFor(() => {
    for (const replica of target.replicas) {
      expect(replica.broker.statuses().some(status => status.state === 'refreshing')).toBe(false)
    }
  }, { timeout: 10_000, interval: 5 })
  await sleep(15)
}

describe('proactive refresh on a fake clock', () => {
  const cases = [
    { name: 'Kivra, 28800 s from expires_in', start: startKivraStandIn, provider: 'kivra' as const, lifetime: 28_800, config: {} },
    { name: 'Kigo, 1800 s configured', start: startKigoStandIn, provider: 'kigo' as const, lifetime: 1800, config: { lifetime_seconds: 1800 } },
    { name: 'Klavi, 1800 s from expireIn (refreshed with GET /refresh)', start: startKlaviStandIn, provider: 'klavi' as const, lifetime: 1800, config: {} },
    { name: 'Kigo, 60 s configured: the 300 s margin is clamped, no refresh loop', start: startKigoStandIn, provider: 'kigo' as const, lifetime: 60, config: { lifetime_seconds: 60 } }
  ]

  it.each(cases)('$name: refreshes at the planned time; no caller gets less than min_ttl', async ({ start, provider, lifetime, config }) => {
    const clock = new FakeClock()
    const standIn = cleanup.add(await start({ now: clock.now, lifetimeSeconds: lifetime }))
    const world = cleanup.add(await createBrokerWorld({
      ...standInCredential(standIn as ProviderStandIn & { secret: Record<string, string> }, { id: 'c', provider, ...config }),
      clock,
      replicas: 2
    }))
    clock.advance(0) // the warm-up scheduled by start()
    await settle(world)
    expect(issuances(standIn)).toHaveLength(1)

    const L = lifetime * 1000
    const minTtlSeconds = Math.min(60, lifetime / 4)
    const step = L / 40
    for (let t = 0; t < 3 * L; t += step) {
      clock.advance(step)
      await settle(world)
      for (const replica of world.replicas) {
        const { grant } = await replica.broker.getToken('c', minTtlSeconds)
        expect(grant.expiresAt - clock.now()).toBeGreaterThanOrEqual(minTtlSeconds * 1000)
        expect(grant.expiresAt - grant.obtainedAt).toBe(L)
      }
    }

    // Planned: min(obtainedAt + 0.75 L, expiresAt - 300 s) ± 5 % of L, clamped into [50 %, 95 %] of L.
    const planned = Math.min(Math.max(Math.min(0.75 * L, L - 300_000), 0.5 * L), 0.95 * L)
    const times = issuances(standIn)
    expect(times.length).toBeGreaterThanOrEqual(4) // three lifetimes: at least one refresh per lifetime
    expect(times.length).toBeLessThanOrEqual(3 * L / (0.5 * L) + 1) // and never a loop
    for (let i = 1; i < times.length; i++) {
      const interval = (times[i] as number) - (times[i - 1] as number)
      expect(interval).toBeGreaterThanOrEqual(Math.max(0.5 * L, planned - 0.05 * L))
      expect(interval).toBeLessThanOrEqual(Math.min(0.95 * L, planned + 0.05 * L))
    }
    expect(world.refreshes.filter(event => event.result !== 'success')).toEqual([])
  })
})

describe('paced proactive refresh', () => {
  /**
   * 30 credentials of 600 s planned at 90 % with no jitter: all due in the same second, 540 s after the
   * cold start. Returns once the cold start has minted each of them.
   */
  async function thirtyDueTogether (replicas: number): Promise<{ clock: FakeClock, coldStart: number, stand: ProviderStandIn, world: BrokerWorld }> {
    const clock = new FakeClock()
    const stand = cleanup.add(await startKivraStandIn({ now: clock.now, lifetimeSeconds: 600 }))
    const refresh = { ratio: 0.9, margin_seconds: 0, jitter_ratio: 0 }
    const world = cleanup.add(await createBrokerWorld({
      credentials: Array.from({ length: 30 }, (_, i) => ({ id: `c${i}`, provider: 'kivra' as const, secret: 'secret/kivra', base_url: stand.url, refresh })),
      secrets: { 'secret/kivra': { ...stand.secret } },
      clock,
      replicas
    }))
    clock.advance(0)
    await settle(world)
    expect(issuances(stand)).toHaveLength(30)
    return { clock, coldStart: clock.now(), stand, world }
  }

  /** Steps the clock from timer to timer until each credential was refreshed once (or the lifetime ran out); the refresh times. */
  async function refreshesOfTheFirstCycle (world: BrokerWorld, clock: FakeClock, coldStart: number, stand: ProviderStandIn): Promise<number[]> {
    while ((clock.nextTimerAt() ?? Infinity) < coldStart + 600_000 && issuances(stand).length < 60) {
      clock.advanceTo(clock.nextTimerAt() as number)
      await settle(world)
    }
    return issuances(stand).slice(30)
  }

  it('30 credentials minted together and planned for the same second are refreshed one second apart, earlier, never later', async () => {
    const { clock, coldStart, stand, world } = await thirtyDueTogether(1)
    const refreshes = await refreshesOfTheFirstCycle(world, clock, coldStart, stand)
    expect(refreshes).toHaveLength(30)
    const seconds = refreshes.map(at => Math.floor((at - coldStart) / 1000)).sort((x, y) => x - y)
    // One per second, in the 30 seconds up to the planned one: never later, no earlier than needed.
    expect(seconds).toEqual(Array.from({ length: 30 }, (_, i) => 511 + i))
    expect(world.refreshes.filter(event => event.result !== 'success')).toEqual([])
    for (let i = 0; i < 30; i++) {
      const { grant } = await world.replicas[0]!.broker.getToken(`c${i}`, 60)
      expect(grant.obtainedAt).toBeGreaterThan(coldStart)
    }
  })

  it('across replicas: the one that mints chooses the moment, every replica schedules it, and each grant is refreshed once, at that moment', async () => {
    const { clock, coldStart, stand, world } = await thirtyDueTogether(3)
    const schedules = world.replicas.map(replica => new Map(replica.broker.statuses().map(status => [status.id, status.nextRefreshAt])))
    for (let i = 0; i < 30; i++) {
      const at = schedules[0]?.get(`c${i}`)
      expect(at).toBeGreaterThan(coldStart)
      expect(at).toBeLessThanOrEqual(coldStart + 540_000)
      for (const schedule of schedules) expect(schedule.get(`c${i}`)).toBe(at)
    }
    const agreed = [...(schedules[0]?.values() ?? [])] as number[]
    expect(new Set(agreed).size).toBeGreaterThan(1) // paced: not all in one moment
    const refreshes = await refreshesOfTheFirstCycle(world, clock, coldStart, stand)
    expect(refreshes).toHaveLength(30) // each refreshed once, by one replica
    // ...at the agreed moments (the stand-in records the clock's time, which only jumps to timers).
    expect([...refreshes].sort((x, y) => x - y)).toEqual([...agreed].sort((x, y) => x - y))
    expect(world.refreshes.filter(event => event.result !== 'success')).toEqual([])
  })
})

describe('one mint per cycle across replicas', () => {
  it('three replicas: 500 concurrent calls at cold start → 1 mint; 10 refresh cycles → 10 mints', async () => {
    const { clock, kigo, world } = await kigoWorld({ replicas: 3, start: false })
    const replicas = world.replicas
    const tokens = await Promise.all(Array.from({ length: 500 }, async (_, i) => await (replicas[i % 3]?.broker.getToken('kigo', 60) as Promise<IssuedToken>)))
    expect(kigo.mints).toBe(1)
    expect(new Set(tokens.map(issued => issued.grant.accessToken)).size).toBe(1)

    await Promise.all(replicas.map(async replica => { await replica.broker.start() }))
    for (let cycle = 1; cycle <= 10; cycle++) {
      const next = clock.nextTimerAt() as number
      clock.advanceTo(next)
      // Load while the refresh runs: every replica keeps answering with enough life left.
      const during = await Promise.all(Array.from({ length: 60 }, async (_, i) => await (replicas[i % 3]?.broker.getToken('kigo', 60) as Promise<IssuedToken>)))
      for (const issued of during) expect(issued.grant.expiresAt - clock.now()).toBeGreaterThanOrEqual(60_000)
      await settle(world)
      expect(kigo.mints).toBe(1 + cycle)
    }
    expect(world.refreshes.filter(event => event.result === 'success')).toHaveLength(11)
  })
})

describe('fencing', () => {
  it('a lease holder that stalls mid-mint loses: the next holder mints, the late write is rejected', async () => {
    const kivra = cleanup.add(await startKivraStandIn())
    const world = cleanup.add(await createBrokerWorld({
      ...standInCredential(kivra, { id: 'kivra', provider: 'kivra' }),
      replicas: 2,
      start: false,
      options: { leaseTtlMs: 300 },
      stalledRenewals: [0] // replica 0 renews nothing: to Redis it stalled past its lease
    }))
    const [a, b] = world.replicas as [typeof world.replicas[0], typeof world.replicas[0]]
    kivra.setFault({ kind: 'latency', ms: 800 }, { times: 1 }) // past A's 300 ms lease, within its 1 s work bound
    const stalled = a.broker.getToken('kivra', 60)
    await vi.waitFor(() => { expect(kivra.mintAttempts).toBe(1) })
    await sleep(400) // A's lease lapses while its mint hangs
    const fromB = await b.broker.getToken('kivra', 60)
    expect(fromB.source).toBe('refreshed')
    const fromA = await stalled

    expect(kivra.mints).toBe(2)
    expect(fromA.grant.accessToken).toBe(fromB.grant.accessToken)
    expect(world.refreshes).toEqual(expect.arrayContaining([
      { replica: 1, credentialId: 'kivra', result: 'success', reason: 'on_demand' },
      { replica: 0, credentialId: 'kivra', result: 'fenced_out', reason: 'on_demand' }
    ]))
    // Both replicas now serve B's grant.
    expect((await a.broker.getToken('kivra', 60)).grant.accessToken).toBe(fromB.grant.accessToken)
  })
})

describe('provider outage', () => {
  it('serves the current grant while it satisfies min_ttl, then 503 with Retry-After, then recovers by itself', async () => {
    const { clock, kigo, world } = await kigoWorld({})
    const broker = world.replicas[0]?.broker as NonNullable<typeof world.replicas[0]>['broker']
    clock.advance(0)
    await settle(world)
    const first = await broker.getToken('kigo', 60)
    kigo.setFault({ kind: 'server-error', status: 503 })

    let staleServed = 0
    let refused: BrokerError | undefined
    while (refused === undefined) {
      clock.advance(15_000)
      await settle(world)
      try {
        const issued = await broker.getToken('kigo', 60)
        expect(issued.grant.accessToken).toBe(first.grant.accessToken)
        expect(issued.grant.expiresAt - clock.now()).toBeGreaterThanOrEqual(60_000)
        if (issued.source === 'stale') staleServed += 1
      } catch (err) {
        refused = err as BrokerError
      }
    }
    expect(staleServed).toBeGreaterThan(0)
    expect(refused).toBeInstanceOf(BrokerError)
    expect(refused.code).toBe('CB_PROVIDER_UNAVAILABLE')
    expect(refused.statusCode).toBe(503)
    expect(refused.retryAfterSeconds).toBeGreaterThanOrEqual(1)
    expect(clock.now()).toBeGreaterThan(first.grant.expiresAt - 61_000) // min_ttl plus the 1 s serving margin
    expect(broker.statuses()[0]).toMatchObject({ state: 'stale' })

    kigo.clearFaults()
    const mintsBefore = kigo.mints
    const recoveredFrom = clock.now()
    // The scheduled retries, no restart. The first may still meet the circuit breaker's cooldown
    // (at most 60 s) and be refused without a call; a later one goes through.
    for (let retry = 0; retry < 10 && kigo.mints === mintsBefore; retry++) {
      clock.advanceTo(clock.nextTimerAt() as number)
      await settle(world)
    }
    expect(kigo.mints).toBe(mintsBefore + 1)
    expect(clock.now() - recoveredFrom).toBeLessThanOrEqual(5 * 60_000) // within the backoff cap
    const recovered = await broker.getToken('kigo', 60)
    expect(recovered.grant.accessToken).not.toBe(first.grant.accessToken)
    expect(broker.statuses()[0]).toMatchObject({ state: 'fresh', consecutiveFailures: 0 })
  })
})

describe('Redis outage', () => {
  it('serves from the local cache, refreshes at most once per replica, and continues on reconnect', async () => {
    const redis = cleanup.add(await spawnRedisServer())
    const { clock, kigo, world } = await kigoWorld({ replicas: 3, redisUrl: redis.url })
    clock.advance(0)
    await settle(world)
    expect(kigo.mints).toBe(1)

    await redis.kill()
    for (const replica of world.replicas) {
      expect((await replica.broker.getToken('kigo', 60)).source).toBe('local')
    }
    clock.advanceTo(clock.nextTimerAt() as number)
    await settle(world)
    const duringOutage = kigo.mints - 1
    expect(duringOutage).toBeGreaterThanOrEqual(1)
    expect(duringOutage).toBeLessThanOrEqual(3)
    for (const replica of world.replicas) {
      const { grant } = await replica.broker.getToken('kigo', 60)
      expect(grant.expiresAt - clock.now()).toBeGreaterThan(1000 * 1000)
    }

    await redis.restart()
    for (const replica of world.replicas) {
      await vi.waitFor(async () => { expect((await replica.store.health()).state).toBe('up') }, { timeout: 10_000, interval: 100 })
    }
    const mintsBefore = kigo.mints
    clock.advanceTo(clock.nextTimerAt() as number)
    await settle(world)
    expect(kigo.mints).toBe(mintsBefore + 1)
  })
})

describe('grants at rest', () => {
  it('the raw Redis values hold no plaintext token', async () => {
    const kivra = cleanup.add(await startKivraStandIn())
    const world = cleanup.add(await createBrokerWorld({
      ...standInCredential(kivra, { id: 'kivra', provider: 'kivra' })
    }))
    const { grant } = await world.replicas[0]!.broker.getToken('kivra', 60)
    const raw = cleanup.add(new Redis(world.redisUrl))
    const keys = await raw.keys(`${world.prefix}*`)
    expect(keys.length).toBeGreaterThan(0)
    const values = await Promise.all(keys.map(async key => {
      const type = await raw.type(key)
      if (type === 'string') return await raw.get(key) ?? ''
      if (type === 'hash') return JSON.stringify(await raw.hgetall(key))
      return ''
    }))
    const dump = values.join('\n')
    expect(dump.length).toBeGreaterThan(0)
    expect(dump).not.toContain(grant.accessToken)
    expect(dump).not.toContain(kivra.secret.client_secret as string)
  })
})
