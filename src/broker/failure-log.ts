import type { Logger } from 'pino'

/** At most one warn line per credential and error kind per this long while its endpoint's breaker stays open. */
export const failureSummaryIntervalMs = 60_000

export interface FailureLog {
  /** A refresh failed; `breakerOpen` when the credential's endpoint breaker is not closed. */
  failed: (key: string, err: unknown, breakerOpen: boolean, fields: Record<string, unknown>) => void
  /** A refresh succeeded: the next failure is news again. */
  succeeded: (key: string) => void
}

function kindOf (err: unknown): string {
  if (!(err instanceof Error)) return typeof err
  const kind = (err as { kind?: unknown }).kind
  const code = (err as { code?: unknown }).code
  return `${err.name}:${typeof kind === 'string' ? kind : ''}:${typeof code === 'string' ? code : ''}`
}

/**
 * `refresh failed` lines without the flood: a dead endpoint is retried every ~1.5 s (the breaker's probe)
 * forever, and a warn line per probe says nothing new. The first failure of a kind is a warn; the same kind
 * again while the breaker stays open is debug, with a warn summary (`failuresSince`) at most once a minute.
 * A different kind, a closed breaker (e.g. a permanent refusal, which does not open it) or a success in
 * between make the next failure a warn again.
 */
export function createFailureLog ({ log, now }: { log: Logger, now: () => number }): FailureLog {
  const last = new Map<string, { kind: string, warnedAt: number, since: number }>()
  return {
    failed (key, err, breakerOpen, fields) {
      const kind = kindOf(err)
      const previous = last.get(key)
      const at = now()
      if (breakerOpen && previous?.kind === kind) {
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
