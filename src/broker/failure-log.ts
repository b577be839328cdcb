import type { Logger } from 'pino'
import type { CircuitState } from './circuit-breaker.js'
import { BrokerError, SecretError } from '../errors.js'

/** At most one warn line per credential and error kind per this long while its endpoint's breaker stays open. */
export const failureSummaryIntervalMs = 60_000

export interface FailureLog {
  /** A refresh failed; `ongoing` while the outage is reported elsewhere (ongoingOutage). */
  failed: (key: string, err: unknown, ongoing: boolean, fields: Record<string, unknown>) => void
  /** A refresh succeeded: the next failure is news again. */
  succeeded: (key: string) => void
}

/**
 * Whether a refresh failure belongs to an outage that logs itself and lasts: the endpoint's breaker is not
 * closed (it logged its opening), or the secret source is unreachable ('vault unavailable' was logged).
 */
export function ongoingOutage (err: unknown, breaker: CircuitState): boolean {
  if (breaker !== 'closed') return true
  return err instanceof BrokerError && err.code === 'CB_SECRET_UNAVAILABLE' && err.cause instanceof SecretError && err.cause.kind === 'unavailable'
}

function kindOf (err: unknown): string {
  if (!(err instanceof Error)) return typeof err
  const kind = (err as { kind?: unknown }).kind
  const code = (err as { code?: unknown }).code
  return `${err.name}:${typeof kind === 'string' ? kind : ''}:${typeof code === 'string' ? code : ''}`
}

/**
 * `refresh failed` lines without the flood: a dead endpoint is retried every ~1.5 s (the breaker's probe)
 * forever (and every secret read while Vault is down fails), and a warn line per retry says nothing new.
 * The first failure of a kind is a warn; the same kind again during the outage is debug, with a warn summary
 * (`failuresSince`) at most once a minute. A different kind, no outage (e.g. a permanent refusal, which
 * does not open the breaker) or a success in between make the next failure a warn again.
 */
export function createFailureLog ({ log, now }: { log: Logger, now: () => number }): FailureLog {
  const last = new Map<string, { kind: string, warnedAt: number, since: number }>()
  return {
    failed (key, err, ongoing, fields) {
      const kind = kindOf(err)
      const previous = last.get(key)
      const at = now()
      if (ongoing && previous?.kind === kind) {
        previous.since += 1
        if (at - previous.warnedAt < failureSummaryIntervalMs) {
          log.debug({ err, ...fields }, 'refresh failed')
          return
        }
        log.warn({ err, ...fields, failuresSince: previous.since }, 'refresh failed')
        previous.warnedAt = at
        previous.since = 0
        return
      }
      log.warn({ err, ...fields }, 'refresh failed')
      last.set(key, { kind, warnedAt: at, since: 0 })
    },
    succeeded (key) {
      last.delete(key)
    }
  }
}
