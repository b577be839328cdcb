import type { Logger } from 'pino'
import type { CredentialConfig } from '../config.js'
import type { Clock } from '../time.js'

export type CircuitState = 'closed' | 'open' | 'half_open'

export interface CircuitBreaker {
  /** Whether a call may go to the provider now; when not, how long until it may. */
  check: () => { allowed: true } | { allowed: false, retryAfterMs: number }
  success: () => void
  failure: () => void
  /** A permitted call ended without reaching the provider: free the half-open probe slot. */
  abandon: () => void
  state: () => CircuitState
}

export interface CircuitBreakerOptions {
  clock: Clock
  /** Consecutive transient failures that open the circuit. */
  failureThreshold?: number
  cooldownMs?: number
  maxCooldownMs?: number
  onStateChange?: (state: CircuitState) => void
}

/**
 * One per provider endpoint. While a provider is down, every credential on it would otherwise retry on
 * its own schedule; the breaker turns that into one probe per cooldown. The cooldown doubles while
 * probes keep failing (up to maxCooldownMs) and resets on the first success.
 */
export function createCircuitBreaker ({ clock, failureThreshold = 5, cooldownMs = 5_000, maxCooldownMs = 60_000, onStateChange }: CircuitBreakerOptions): CircuitBreaker {
  let state: CircuitState = 'closed'
  let failures = 0
  let openUntil = 0
  let currentCooldown = cooldownMs
  let probeInFlight = false

  const move = (next: CircuitState): void => {
    if (next !== state) { state = next; onStateChange?.(next) }
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
      return { allowed: false, retryAfterMs: Math.max(1000, openUntil - now) }
    },
    success () {
      failures = 0
      probeInFlight = false
      currentCooldown = cooldownMs
      move('closed')
    },
    failure () {
      failures += 1
      if (state === 'half_open') {
        probeInFlight = false
        currentCooldown = Math.min(maxCooldownMs, currentCooldown * 2)
        openUntil = clock.now() + currentCooldown
        move('open')
      } else if (state === 'closed' && failures >= failureThreshold) {
        openUntil = clock.now() + currentCooldown
        move('open')
      }
    },
    abandon () {
      probeInFlight = false
    },
    state: () => state
  }
}

export interface BreakerRegistry {
  /** The breaker of the provider endpoint a credential mints at (shared by every credential on that endpoint). */
  forCredential: (credential: CredentialConfig) => CircuitBreaker
}

/** The breakers of this replica, one per provider endpoint: provider, environment and host. */
export function createBreakerRegistry ({ clock, log, failureThreshold, cooldownMs, onStateChange }: {
  clock: Clock
  log: Logger
  failureThreshold?: number | undefined
  cooldownMs?: number | undefined
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
          onStateChange: state => {
            log.warn({ provider: credential.provider, endpoint, state }, 'circuit breaker changed state')
            onStateChange?.(credential, endpoint, state)
          }
        })
        breakers.set(endpoint, breaker)
      }
      return breaker
    }
  }
}
