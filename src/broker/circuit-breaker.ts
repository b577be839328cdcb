import type { Logger } from 'pino'
import type { CredentialConfig } from '../config.js'
import { backoffDelayMs, type Clock } from '../time.js'

export type CircuitState = 'closed' | 'open' | 'half_open'

export interface CircuitBreaker {
  /** Whether a call may go to the provider now; when not, how long until it may. */
  check: () => { allowed: true } | { allowed: false, retryAfterMs: number }
  success: () => void
  /** A transient failure; `retryAfterMs` (a provider's Retry-After) is a floor of the next attempt. */
  failure: (retryAfterMs?: number) => void
  /** A permitted call ended without reaching the provider: free the half-open probe slot. */
  abandon: () => void
  state: () => CircuitState
  /** How long no call may go now (0 when one may). */
  blockedMs: () => number
}

export interface CircuitBreakerOptions {
  clock: Clock
  /** Consecutive transient failures that open the circuit. Default 1: every failure counts. */
  failureThreshold?: number | undefined
  /** The pause after the first failure; it doubles while probes fail, up to maxCooldownMs. Default 500 ms. */
  cooldownMs?: number | undefined
  /** Default 1500 ms: a provider that recovers is used again within 2 s of its first good answer. */
  maxCooldownMs?: number | undefined
  random?: (() => number) | undefined
  onStateChange?: (state: CircuitState, previous: CircuitState) => void
}

/**
 * One per provider endpoint, and the one retry schedule of everything that calls it: callers that need a
 * token, proactive refreshes and retries all ask it, so however many credentials share the endpoint and
 * however many callers wait, this replica sends the endpoint at most one call per cooldown while it fails
 * (the half-open probe), and none sooner than the provider's Retry-After. The cooldown is short (0.5 s
 * doubling to 1.5 s, with jitter so replicas do not probe in step): a provider that recovers is used again
 * within 2 s by the next caller or the next scheduled retry, whichever comes first. Permanent refusals
 * (wrong secret) are not the endpoint's failure: they have their own, slower probe (refresh-policy.ts).
 */
export function createCircuitBreaker ({ clock, failureThreshold = 1, cooldownMs = 500, maxCooldownMs = 1500, random = Math.random, onStateChange }: CircuitBreakerOptions): CircuitBreaker {
  let state: CircuitState = 'closed'
  let failures = 0
  let openUntil = 0
  let probeInFlight = false

  const move = (next: CircuitState): void => {
    if (next !== state) {
      const previous = state
      state = next
      onStateChange?.(next, previous)
    }
  }
  const open = (retryAfterMs: number | undefined): void => {
    const cooldown = backoffDelayMs(Math.max(1, failures - failureThreshold + 1), undefined, { baseMs: cooldownMs, capMs: maxCooldownMs, jitterRatio: 0.25 }, random)
    openUntil = clock.now() + Math.max(cooldown, retryAfterMs ?? 0)
    move('open')
  }

  return {
    check () {
      if (state === 'closed') return { allowed: true }
      const now = clock.now()
      if (state === 'open' && now >= openUntil) move('half_open')
      if (state === 'half_open' && !probeInFlight) {
        probeInFlight = true
        return { allowed: true }
      }
      // A probe is out: its answer decides; ask again in a moment.
      return { allowed: false, retryAfterMs: Math.max(250, openUntil - now) }
    },
    success () {
      failures = 0
      probeInFlight = false
      move('closed')
    },
    failure (retryAfterMs) {
      failures += 1
      probeInFlight = false
      if (state !== 'closed' || failures >= failureThreshold) open(retryAfterMs)
    },
    abandon () {
      probeInFlight = false
    },
    state: () => state,
    blockedMs () {
      if (state === 'closed') return 0
      if (state === 'half_open') return probeInFlight ? 250 : 0
      return Math.max(0, openUntil - clock.now())
    }
  }
}

export interface BreakerRegistry {
  /** The breaker of the provider endpoint a credential mints at (shared by every credential on that endpoint). */
  forCredential: (credential: CredentialConfig) => CircuitBreaker
}

/** The breakers of this replica, one per provider endpoint: provider, environment and host. */
export function createBreakerRegistry ({ clock, log, failureThreshold, cooldownMs, random, onStateChange }: {
  clock: Clock
  log: Logger
  failureThreshold?: number | undefined
  cooldownMs?: number | undefined
  random?: (() => number) | undefined
  onStateChange?: (credential: CredentialConfig, endpoint: string, state: CircuitState) => void
}): BreakerRegistry {
  const breakers = new Map<string, CircuitBreaker>()
  return {
    forCredential (credential) {
      const endpoint = `${credential.provider}:${credential.environment}:${credential.base_url ?? credential.token_url ?? ''}`
      let breaker = breakers.get(endpoint)
      if (breaker === undefined) {
        breaker = createCircuitBreaker({
          clock,
          failureThreshold,
          cooldownMs,
          random,
          onStateChange: (state, previous) => {
            // A dead endpoint flaps open -> half_open -> open at every probe (~1.5 s), forever: only the
            // first opening and the recovery are news; the metric carries every state.
            const level = previous === 'closed' ? 'warn' : state === 'closed' ? 'info' : 'debug'
            log[level]({ provider: credential.provider, endpoint, state, previous }, 'circuit breaker changed state')
            onStateChange?.(credential, endpoint, state)
          }
        })
        breakers.set(endpoint, breaker)
      }
      return breaker
    }
  }
}
