import { describe, expect, it } from 'vitest'
import { backoffDelayMs } from '../../src/broker/backoff.js'
import { plannedRefreshAt } from '../../src/broker/broker.js'
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
  it('opens after the threshold, lets one probe through after the cooldown, closes on success', () => {
    const clock = new FakeClock(0)
    const states: string[] = []
    const breaker = createCircuitBreaker({ clock, failureThreshold: 3, cooldownMs: 1000, onStateChange: state => states.push(state) })
    for (let i = 0; i < 3; i++) { expect(breaker.check().allowed).toBe(true); breaker.failure() }
    expect(breaker.state()).toBe('open')
    expect(breaker.check()).toEqual({ allowed: false, retryAfterMs: 1000 })
    clock.advance(1000)
    expect(breaker.check().allowed).toBe(true) // the probe
    expect(breaker.check().allowed).toBe(false) // only one at a time
    breaker.failure() // probe failed: open again, longer
    expect(breaker.state()).toBe('open')
    clock.advance(1999)
    expect(breaker.check().allowed).toBe(false)
    clock.advance(1)
    expect(breaker.check().allowed).toBe(true)
    breaker.success()
    expect(breaker.state()).toBe('closed')
    expect(states).toEqual(['open', 'half_open', 'open', 'half_open', 'closed'])
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
      await new Promise(resolve => setTimeout(resolve, 2))
      active -= 1
      return i
    })))
    expect(peak).toBe(3)
    expect(results).toEqual(Array.from({ length: 20 }, (_, i) => i))
  })
})
