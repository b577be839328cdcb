/**
 * Proactive refresh: one timer heap of due moments (timer-heap.ts), the pacer that spreads them
 * (pacer.ts), a bound on refreshes running at once, and the retry schedule after a failed refresh.
 */
import { ProviderError } from '../errors.js'
import type { Grant } from '../providers/types.js'
import { backoffDelayMs, type BackoffPolicy, type Clock } from '../time.js'
import type { GrantState } from './grant-state.js'
import type { Lifecycle } from './lifecycle.js'
import { createLimiter } from './limiter.js'
import { createRefreshPacer, type PacerOptions } from './pacer.js'
import { defaultLocalRetry, earliestRefreshAt, plannedRefreshAt, type RefreshIntent } from './refresh-policy.js'
import { createTimerHeap } from './timer-heap.js'

/** The least time between two attempts of one grant key, whatever its schedule says (no retry loop). */
const minRetryMs = 250

export interface Scheduler {
  /** Books a freshly minted grant's refresh with the pacer and records the moment in the grant, before it is stored. */
  pace: (state: GrantState, grant: Grant) => void
  /** Schedules the proactive refresh of the held grant at its due moment, and records it with the pacer. */
  scheduleRefresh: (state: GrantState) => void
  /** Schedules a refresh for another reason (a retry, a start); it takes no paced slot. */
  scheduleAt: (state: GrantState, at: number) => void
  /** When the next refresh of a grant key is scheduled on this replica. */
  nextRefreshAt: (state: GrantState) => number | undefined
  /** No more proactive refreshes (shutdown). */
  close: () => void
}

export interface SchedulerDeps {
  clock: Clock
  lifecycle: Lifecycle
  /** The grant state of a grant key. */
  resolve: (key: string) => GrantState | undefined
  /** The per-replica single flight (single-flight.ts). */
  refresh: (state: GrantState, intent: RefreshIntent) => Promise<Grant>
  /** Forgets a variant no one asks for any more (credential-table.ts). */
  retire: (state: GrantState) => void
  pacing?: PacerOptions | false | undefined
  maxConcurrentRefreshes?: number | undefined
  /** How long a grant key must still wait: its own pause or its endpoint breaker's (broker.ts). */
  waitMs: (state: GrantState) => number
  /** The pause between retries of one grant key when nothing else says (the breaker never opened). */
  backoff?: BackoffPolicy | undefined
  random?: (() => number) | undefined
}

export function createScheduler (deps: SchedulerDeps): Scheduler {
  const { clock, lifecycle } = deps
  const backoff = deps.backoff ?? defaultLocalRetry
  const random = deps.random ?? Math.random
  const limit = createLimiter(deps.maxConcurrentRefreshes ?? 16)
  const pacer = deps.pacing === false ? undefined : createRefreshPacer(deps.pacing)
  const timers = createTimerHeap({ clock, onDue: key => { pacer?.release(key); proactive(key) } })

  function scheduleAt (state: GrantState, at: number): void {
    pacer?.release(state.key)
    timers.schedule(state.key, at)
  }

  /**
   * A refresh that failed is tried again when its schedule allows: the grant key's own pause (a rejected
   * secret's probe) or its endpoint breaker's, whichever ends later — one schedule, never two added up.
   */
  function retryAfterFailure (state: GrantState, err: unknown): void {
    const floor = backoffDelayMs(Math.max(1, state.consecutiveFailures), err instanceof ProviderError ? err.retryAfterMs : undefined, backoff, random)
    scheduleAt(state, clock.now() + Math.max(minRetryMs, deps.waitMs(state), floor))
  }

  function proactive (key: string): void {
    const state = deps.resolve(key)
    if (state === undefined || lifecycle.closing) return
    // A scoped grant no caller asked for during its life is left to expire (in the store too).
    if (!state.wantsProactiveRefresh()) { deps.retire(state); return }
    lifecycle.track(limit(async () => {
      if (lifecycle.closing) return
      try {
        await deps.refresh(state, { reason: 'proactive' })
      } catch (err) {
        if (!lifecycle.closing) retryAfterFailure(state, err)
      }
    }))
  }

  return {
    pace (state, grant) {
      if (pacer === undefined) return
      const plannedAt = plannedRefreshAt(grant, state.credential.refresh, state.key)
      grant.refreshAt = pacer.book(state.key, { now: clock.now(), earliestAt: earliestRefreshAt(grant), plannedAt })
    },
    scheduleRefresh (state) {
      // User sessions are refreshed on demand only: a session nobody uses must not keep its user logged in.
      if (state.variant.kind === 'user') return
      if (state.held !== undefined) pacer?.bookAt(state.key, state.plannedAt)
      timers.schedule(state.key, state.plannedAt)
    },
    scheduleAt,
    nextRefreshAt: state => timers.scheduledAt(state.key),
    close: () => { timers.close() }
  }
}
