import { describe, expect, it } from 'vitest'
import { createBreakerRegistry } from '../../src/broker/circuit-breaker.js'
import { createFailureLog, failureSummaryIntervalMs, ongoingOutage } from '../../src/broker/failure-log.js'
import { BrokerError, ProviderError, SecretError } from '../../src/errors.js'
import type { CredentialConfig } from '../../src/config.js'
import { FakeClock } from '../support/fake-clock.js'
import { captureLogs } from '../support/logs.js'

const warn = 40
const info = 30
const debug = 20

function levels (entries: Array<Record<string, unknown>>, msg: string, level: number): number {
  return entries.filter(entry => entry.msg === msg && entry.level === level).length
}

/** A dead token endpoint is probed every ~1.5 s forever: the logs must not grow a warn line per probe. */
describe('quiet logs for a dead endpoint', () => {
  it('logs the first opening at warn, the recovery at info, and the open <-> half_open flaps at debug', () => {
    const clock = new FakeClock(0)
    const logs = captureLogs()
    const breakers = createBreakerRegistry({ clock, log: logs.log, random: () => 0.5 })
    const credential = { id: 'kigo-dead', provider: 'kigo', environment: 'sandbox', base_url: 'http://127.0.0.1:2' } as unknown as CredentialConfig
    const breaker = breakers.forCredential(credential)
    const probes = 100
    breaker.failure()
    for (let i = 0; i < probes; i += 1) {
      clock.advance(breaker.blockedMs())
      expect(breaker.check().allowed).toBe(true)
      breaker.failure()
    }
    const entries = logs.entries()
    expect(levels(entries, 'circuit breaker changed state', warn)).toBe(1)
    expect(levels(entries, 'circuit breaker changed state', debug)).toBe(2 * probes)
    clock.advance(breaker.blockedMs())
    breaker.check()
    breaker.success()
    const after = logs.entries()
    expect(levels(after, 'circuit breaker changed state', info)).toBe(1)
    expect(after.at(-1)).toMatchObject({ state: 'closed', previous: 'half_open' })
  })

  it('logs one refresh failure of a kind at warn, then debug, with a summary at most once a minute', () => {
    const clock = new FakeClock(0)
    const logs = captureLogs()
    const failures = createFailureLog({ log: logs.log, now: clock.now })
    const down = (): ProviderError => new ProviderError('transient', 'connect ECONNREFUSED')
    const probes = 400 // 10 min at one probe per 1.5 s
    for (let i = 0; i < probes; i += 1) {
      failures.failed('kigo-dead', down(), true, { credentialId: 'kigo-dead' })
      clock.advance(1500)
    }
    const entries = logs.entries()
    const warned = entries.filter(entry => entry.msg === 'refresh failed' && entry.level === warn)
    expect(warned.length).toBeLessThanOrEqual(1 + Math.ceil(probes * 1500 / failureSummaryIntervalMs))
    expect(warned.length).toBeGreaterThan(1)
    // The summaries count what was logged at debug since the last warn line: nothing is lost.
    const summarised = warned.slice(1).reduce((sum, entry) => sum + (entry.failuresSince as number), 0)
    const lastWarn = entries.lastIndexOf(warned.at(-1)!)
    const sinceLastSummary = entries.slice(lastWarn + 1).filter(entry => entry.msg === 'refresh failed').length
    expect(summarised).toBe(probes - 1 - sinceLastSummary)
    expect(levels(entries, 'refresh failed', debug) + warned.length).toBe(probes)
    for (const entry of warned.slice(1)) expect(entry.failuresSince).toBeGreaterThanOrEqual(39)
  })

  it('logs at warn again for another kind of error, a closed breaker, or after a success', () => {
    const clock = new FakeClock(0)
    const logs = captureLogs()
    const failures = createFailureLog({ log: logs.log, now: clock.now })
    const transient = new ProviderError('transient', 'answered 503')
    failures.failed('a', transient, true, {})
    failures.failed('a', transient, true, {})
    failures.failed('a', new ProviderError('permanent', 'client secret refused'), true, {})
    failures.failed('a', new ProviderError('permanent', 'client secret refused'), false, {})
    failures.succeeded('a')
    failures.failed('a', transient, true, {})
    failures.failed('b', transient, true, {})
    expect(logs.entries().map(entry => entry.level)).toEqual([warn, debug, warn, warn, warn, warn])
  })

  it('counts an open breaker and an unreachable secret source as an ongoing outage, nothing else', () => {
    const transient = new ProviderError('transient', 'answered 503')
    const secret = (kind: 'unavailable' | 'denied'): BrokerError => new BrokerError('CB_SECRET_UNAVAILABLE', 'could not be read', { cause: new SecretError(kind, 'vault') })
    expect(ongoingOutage(transient, 'open')).toBe(true)
    expect(ongoingOutage(transient, 'half_open')).toBe(true)
    expect(ongoingOutage(transient, 'closed')).toBe(false)
    expect(ongoingOutage(secret('unavailable'), 'closed')).toBe(true)
    expect(ongoingOutage(secret('denied'), 'closed')).toBe(false)
  })
})
