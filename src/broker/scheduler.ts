/**
 * Proactive refresh: one timer heap of due moments (timer-heap.ts), the pacer that spreads them
 * (pacer.ts), a bound on refreshes running at once, and the retry schedule after a failed refresh.
 */
import { ProviderError } from '../errors.js'
import type { Grant } from '../providers/types.js'
import { backoffDelayMs, defaultBackoff, type BackoffPolicy, type Clock } from '../time.js'
import type { GrantState } from './grant-state.js'
import type { Lifecycle } from './lifecycle.js'
import { createLimiter } from './limiter.js'
import { createRefreshPacer, type PacerOptions } from './pacer.js'
import { earliestRefreshAt, plannedRefreshAt, type RefreshIntent } from './refresh-policy.js'
import { createTimerHeap } from './timer-heap.js'

/** How long a credential whose secret the provider rejects waits before the provider is asked again (unless rotated or forced). */
const permanentProbeIntervalMs = 10 * 60_000

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
  backoff?: BackoffPolicy | undefined
  random?: (() => number) | undefined
}

export function createScheduler (deps: SchedulerDeps): Scheduler {
  const { clock, lifecycle } = deps
  const backoff = deps.backoff ?? defaultBackoff
  const random = deps.random ?? Math.random
  const limit = createLimiter(deps.maxConcurrentRefreshes ?? 16)
  const pacer = deps.pacing === false ? undefined : createRefreshPacer(deps.pacing)
  const timers = createTimerHeap({ clock, onDue: key => { pacer?.release(key); proactive(key) } })

  function scheduleAt (state: GrantState, at: number): void {
    pacer?.release(state.key)
    timers.schedule(state.key, at)
  }

  /** A refresh that failed is tried again after the backoff (or, for a rejected secret, the probe interval). */
  function retryAfterFailure (state: GrantState, err: unknown): void {
    const retryIn = state.permanent !== undefined
      ? permanentProbeIntervalMs
      : backoffDelayMs(Math.max(1, state.consecutiveFailures), err instanceof ProviderError ? err.retryAfterMs : undefined, backoff, random)
    scheduleAt(state, clock.now() + retryIn)
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
