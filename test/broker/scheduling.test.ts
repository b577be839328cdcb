import { describe, expect, it } from 'vitest'
import { backoffDelayMs, sleep } from '../../src/time.js'
import { earliestRefreshAt, plannedRefreshAt } from '../../src/broker/refresh-policy.js'
import { createRefreshPacer } from '../../src/broker/pacer.js'
import { createCircuitBreaker } from '../../src/broker/circuit-breaker.js'
import { createLimiter } from '../../src/broker/limiter.js'
import { createTimerHeap } from '../../src/broker/timer-heap.js'
import { FakeClock } from '../support/fake-clock.js'

const policy = { ratio: 0.75, margin_seconds: 300, jitter_ratio: 0.05 }
const grantOf = (obtainedAt: number, lifetimeSeconds: number): { accessToken: string, tokenType: string, obtainedAt: number, expiresAt: number } =>
  ({ accessToken: 't', tokenType: 'bearer', obtainedAt, expiresAt: obtainedAt + lifetimeSeconds * 1000 })

describe('plannedRefreshAt', () => {
  it.each([
    [28_800, 21_600], // Kivra 8 h: 75 % (6 h) comes before expiry − 5 min
    [1800, 1350], // Kigo / Klavi 30 min: 22.5 min
    [600, 300], // 10 min: expiry − 5 min (300 s) comes before 75 % (450 s), and is exactly 50 %
    [60, 30] // 1 min: the 5 min margin would be before the grant existed; clamped to 50 %
  ])('lifetime %i s → about %i s after obtainedAt (±5 %% jitter, within [50 %%, 95 %%])', (lifetime, expected) => {
    const at = plannedRefreshAt(grantOf(0, lifetime), policy, 'k') / 1000
    const byRule = Math.min(Math.max(Math.min(0.75 * lifetime, lifetime - 300), 0.5 * lifetime), 0.95 * lifetime)
    expect(byRule).toBe(expected)
    expect(at).toBeGreaterThanOrEqual(Math.max(0.5 * lifetime, byRule - 0.05 * lifetime))
    expect(at).toBeLessThanOrEqual(Math.min(0.95 * lifetime, byRule + 0.05 * lifetime))
  })

  it('is the same on every replica for the same grant, and differs between grants', () => {
    expect(plannedRefreshAt(grantOf(1000, 1800), policy, 'a')).toBe(plannedRefreshAt(grantOf(1000, 1800), policy, 'a'))
    expect(plannedRefreshAt(grantOf(1000, 1800), policy, 'a')).not.toBe(plannedRefreshAt(grantOf(1000, 1800), policy, 'b'))
  })

  it('spreads 10,000 credentials minted in the same second: no second gets more than 2 × the average', () => {
    const perSecond = new Map<number, number>()
    for (let i = 0; i < 10_000; i++) {
      const second = Math.floor(plannedRefreshAt(grantOf(0, 1800), policy, `credential-${i}`) / 1000)
      perSecond.set(second, (perSecond.get(second) ?? 0) + 1)
    }
    const seconds = [...perSecond.keys()]
    const window = Math.max(...seconds) - Math.min(...seconds) + 1
    const average = 10_000 / window
    expect(window).toBeGreaterThanOrEqual(170) // ±5 % of 1800 s
    expect(Math.max(...perSecond.values())).toBeLessThanOrEqual(2 * average)
  })
})

describe('refresh pacer', () => {
  const lifetimes = [1800, 3600, 7200, 14_400, 28_800]

  it('levels a cold start of 10,000 credentials: no second over 2 × the long-run rate, none later than planned or earlier than allowed', () => {
    const pacer = createRefreshPacer()
    const perSecond = new Map<number, number>()
    const bookings: Array<{ at: number, earliestAt: number, plannedAt: number, obtainedAt: number }> = []
    for (let i = 0; i < 10_000; i++) {
      const grant = grantOf(Math.floor(i / 2000) * 1000 + (i % 7), lifetimes[i % lifetimes.length] as number) // all minted in 5 s
      const plannedAt = plannedRefreshAt(grant, policy, `credential-${i}`)
      const earliestAt = earliestRefreshAt(grant)
      const at = pacer.book(`credential-${i}`, { now: 6000, earliestAt, plannedAt })
      bookings.push({ at, earliestAt, plannedAt, obtainedAt: grant.obtainedAt })
      perSecond.set(Math.floor(at / 1000), (perSecond.get(Math.floor(at / 1000)) ?? 0) + 1)
    }
    for (const { at, earliestAt, plannedAt } of bookings) {
      expect(at).toBeLessThanOrEqual(plannedAt)
      expect(at).toBeGreaterThanOrEqual(earliestAt)
    }
    // The long-run rate: Σ 1 / planned interval ≈ 2,000 × (1/1350 + 1/2700 + 1/5400 + 1/10800 + 1/21600) ≈ 2.8/s.
    const longRunRate = bookings.reduce((sum, { plannedAt, obtainedAt }) => sum + 1000 / (plannedAt - obtainedAt), 0)
    expect(longRunRate).toBeGreaterThan(2.6)
    expect(longRunRate).toBeLessThan(3)
    const room = 2 * longRunRate
    expect(Math.max(...perSecond.values())).toBeLessThanOrEqual(room)
    // Unpaced, the same plans put up to a dozen refreshes into one second (the 30 min wave: 2,000 in ±90 s).
    const unpaced = new Map<number, number>()
    for (const { plannedAt } of bookings) unpaced.set(Math.floor(plannedAt / 1000), (unpaced.get(Math.floor(plannedAt / 1000)) ?? 0) + 1)
    expect(Math.max(...unpaced.values())).toBeGreaterThan(room)
  })

  it('keeps the planned time when its second is free, moves to the emptiest second before it, and never delays a refresh', () => {
    const pacer = createRefreshPacer()
    const book = (id: string, plannedAt: number, earliestAt = 50_000): number => pacer.book(id, { now: 0, earliestAt, plannedAt })
    expect(book('a', 100_250)).toBe(100_250)
    expect(book('b', 100_500)).toBe(99_500) // second 100 is taken: the one before, same offset
    expect(book('c', 100_900, 100_000)).toBe(100_900) // no free second in its window: the planned time, shared
    pacer.release('b')
    expect(book('d', 100_700)).toBe(99_700) // b's second is free again
    expect(book('d', 100_700)).toBe(99_700) // re-booking replaces the booking, it does not add to it
  })

  it('counts a moment another replica chose (bookAt) like its own bookings', () => {
    const pacer = createRefreshPacer()
    pacer.bookAt('from-another-replica', 100_300)
    expect(pacer.book('mine', { now: 0, earliestAt: 50_000, plannedAt: 100_800 })).toBe(99_800)
    pacer.bookAt('from-another-replica', 90_000) // re-booked elsewhere: second 100 is free again
    expect(pacer.book('mine', { now: 0, earliestAt: 50_000, plannedAt: 100_800 })).toBe(100_800)
  })

  it('moves a refresh no further back than maxAdvanceMs', () => {
    const pacer = createRefreshPacer({ maxAdvanceMs: 2000 })
    const book = (id: string): number => pacer.book(id, { now: 0, earliestAt: 10_000, plannedAt: 100_000 })
    expect([book('a'), book('b'), book('c'), book('d')]).toEqual([100_000, 99_000, 98_000, 100_000])
  })

  it('may move a refresh to 40 % of the lifetime at the earliest, and never sooner than 1 s after the grant', () => {
    expect(earliestRefreshAt(grantOf(0, 1800))).toBe(720_000)
    expect(earliestRefreshAt(grantOf(0, 28_800))).toBe(11_520_000)
    expect(earliestRefreshAt(grantOf(0, 2))).toBe(1000)
  })

  it('runs a grant that is already due at once', () => {
    const pacer = createRefreshPacer()
    expect(pacer.book('a', { now: 5000, earliestAt: 1000, plannedAt: 4000 })).toBe(4000)
  })
})

describe('timer heap', () => {
  it('fires in time order, honours re-scheduling and cancelling, with one armed timer', () => {
    const clock = new FakeClock(0)
    const fired: string[] = []
    const heap = createTimerHeap({ clock, onDue: id => fired.push(`${id}@${clock.now()}`) })
    heap.schedule('c', 300)
    heap.schedule('a', 100)
    heap.schedule('b', 200)
    heap.schedule('a', 250) // moved later
    heap.schedule('d', 150)
    heap.cancel('d')
    expect(heap.size()).toBe(3)
    expect(heap.scheduledAt('a')).toBe(250)
    clock.advance(1000)
    expect(fired).toEqual(['b@200', 'a@250', 'c@300'])
    expect(heap.size()).toBe(0)
  })

  it('keeps 10,000 deadlines behind a single clock timer and fires each once', () => {
    const clock = new FakeClock(0)
    let armed = 0
    const countingClock = { ...clock, now: clock.now, clearTimer: clock.clearTimer, setTimer: (callback: () => void, delay: number) => { armed += 1; return clock.setTimer(callback, delay) } }
    const fired = new Map<string, number>()
    const heap = createTimerHeap({ clock: countingClock, onDue: id => fired.set(id, (fired.get(id) ?? 0) + 1) })
    for (let i = 0; i < 10_000; i++) heap.schedule(`c${i}`, 1000 + ((i * 7919) % 100_000))
    expect(armed).toBeLessThan(50) // re-armed only when a new earliest deadline arrives
    clock.advance(200_000)
    expect(fired.size).toBe(10_000)
    expect([...fired.values()].every(count => count === 1)).toBe(true)
  })
})

describe('backoff', () => {
  it('grows exponentially with jitter, caps, and never retries before Retry-After', () => {
    const low = (): number => 0
    const high = (): number => 0.999
    expect(backoffDelayMs(1, undefined, { baseMs: 1000, capMs: 60_000 }, low)).toBe(500)
    expect(backoffDelayMs(1, undefined, { baseMs: 1000, capMs: 60_000 }, high)).toBeCloseTo(1000, -1)
    expect(backoffDelayMs(4, undefined, { baseMs: 1000, capMs: 60_000 }, low)).toBe(4000)
    expect(backoffDelayMs(20, undefined, { baseMs: 1000, capMs: 60_000 }, high)).toBeLessThanOrEqual(60_000)
    expect(backoffDelayMs(1, 7000, { baseMs: 1000, capMs: 60_000 }, low)).toBe(7000)
  })
})

describe('circuit breaker', () => {
  const half = (): number => 0.5
  it('opens at the threshold, lets one probe through after a short cooldown that doubles to its cap, closes on success', () => {
    const clock = new FakeClock(0)
    const states: string[] = []
    const breaker = createCircuitBreaker({ clock, failureThreshold: 3, cooldownMs: 400, maxCooldownMs: 1000, random: half, onStateChange: state => states.push(state) })
    for (let i = 0; i < 3; i++) { expect(breaker.check().allowed).toBe(true); breaker.failure() }
    expect(breaker.state()).toBe('open')
    // Jitter takes up to a quarter off: 400 ms × (1 − 0.25 × 0.5).
    expect(breaker.blockedMs()).toBe(350)
    expect(breaker.check()).toEqual({ allowed: false, retryAfterMs: 350 })
    clock.advance(350)
    expect(breaker.check().allowed).toBe(true) // the probe
    expect(breaker.check().allowed).toBe(false) // only one at a time
    breaker.failure() // probe failed: open again, twice as long
    expect(breaker.blockedMs()).toBe(700)
    breaker.failure()
    breaker.failure()
    expect(breaker.blockedMs()).toBe(875) // capped at 1000 ms before jitter
    clock.advance(875)
    expect(breaker.check().allowed).toBe(true)
    breaker.success()
    expect(breaker.state()).toBe('closed')
    expect(breaker.blockedMs()).toBe(0)
    expect(states).toEqual(['open', 'half_open', 'open', 'half_open', 'closed'])
  })

  it('by default opens at the first failure and honours Retry-After as a floor', () => {
    const clock = new FakeClock(0)
    const breaker = createCircuitBreaker({ clock, random: half })
    breaker.failure(7000)
    expect(breaker.state()).toBe('open')
    expect(breaker.blockedMs()).toBe(7000)
  })

  it('an abandoned probe frees the slot without closing the circuit', () => {
    const clock = new FakeClock(0)
    const breaker = createCircuitBreaker({ clock, failureThreshold: 1, cooldownMs: 10 })
    breaker.failure()
    clock.advance(10)
    expect(breaker.check().allowed).toBe(true)
    breaker.abandon()
    expect(breaker.state()).toBe('half_open')
    expect(breaker.check().allowed).toBe(true)
  })
})

describe('limiter', () => {
  it('runs at most N tasks at once and all of them eventually', async () => {
    const limit = createLimiter(3)
    let active = 0
    let peak = 0
    const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => await limit(async () => {
      active += 1
      peak = Math.max(peak, active)
      await sleep(2)
      active -= 1
      return i
    })))
    expect(peak).toBe(3)
    expect(results).toEqual(Array.from({ length: 20 }, (_, i) => i))
  })
})
