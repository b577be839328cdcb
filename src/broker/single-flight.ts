/**
 * The per-replica single flight of one grant key: concurrent callers and timers on this replica share
 * one refresh (which cluster-refresh.ts makes one for the whole cluster). A caller waits no longer than
 * its own deadline, across joined refreshes and its own; a refresh outlives a caller that gave up, and
 * is shared with the next one.
 */
import { BrokerError, CircuitOpenError } from '../errors.js'
import type { Grant } from '../providers/types.js'
import { withTimeout, type Clock } from '../time.js'
import { refreshTimeout, type ClusterRefresh } from './cluster-refresh.js'
import type { GrantState } from './grant-state.js'
import { dueAt, isCallerWaiting, needsRefresh, type RefreshIntent } from './refresh-policy.js'

export interface SingleFlight {
  refresh: (state: GrantState, intent: RefreshIntent) => Promise<Grant>
}

export interface SingleFlightDeps {
  cluster: ClusterRefresh
  clock: Clock
  /** How long a waiting caller may wait in all. */
  waitTimeoutMs: (state: GrantState) => number
  /** How long a background refresh waits for another replica's refresh before giving up (it is rescheduled). */
  backgroundWaitMs: (state: GrantState) => number
  /** A refresh of this replica succeeded. */
  onSuccess: (state: GrantState) => void
  /** A refresh of this replica failed (not counted: a wait that timed out, or shutdown). */
  onFailure: (state: GrantState, err: unknown, intent: RefreshIntent) => void
}

/** A failure of waiting, not of refreshing (a closed circuit made no call): it says nothing new about the provider. */
const isWaitFailure = (err: unknown): boolean =>
  err instanceof CircuitOpenError || (err instanceof BrokerError && (err.code === 'CB_REFRESH_TIMEOUT' || err.code === 'CB_NOT_READY'))

export function createSingleFlight (deps: SingleFlightDeps): SingleFlight {
  const { cluster, clock } = deps

  async function waitFor<T> (state: GrantState, promise: Promise<T>, deadline: number): Promise<T> {
    return await withTimeout(promise, deadline - Date.now(), () => refreshTimeout(state))
  }

  /**
   * Joins the refreshes already running here. One may have been started for another reason and decided
   * that nothing was needed; then the caller runs its own, unless someone else joined first and already
   * started one. Answers a grant that serves the intent, or undefined when a refresh of our own is needed.
   */
  async function join (state: GrantState, intent: RefreshIntent, deadline: number): Promise<Grant | undefined> {
    const callerWaiting = isCallerWaiting(intent)
    for (let inflight = state.inflight; inflight !== undefined; inflight = state.inflight) {
      // A caller joining a proactive or rotation refresh keeps its own deadline.
      const settled = inflight.then(grant => ({ grant }), (err: unknown) => ({ err }))
      const outcome = callerWaiting ? await waitFor(state, settled, deadline) : await settled
      if ('err' in outcome) {
        // A background refresh that gave up waiting for another replica's lease is no answer for a caller
        // with time left: it goes on waiting on its own rather than getting a 503.
        const gaveUp = outcome.err instanceof BrokerError && outcome.err.code === 'CB_REFRESH_TIMEOUT'
        if (!(callerWaiting && gaveUp)) throw outcome.err
      } else if (!needsRefresh(outcome.grant, intent, clock.now(), grant => dueAt(grant, state.credential.refresh, state.key))) {
        return outcome.grant
      }
      if (state.inflight === inflight) break
    }
    return undefined
  }

  async function refresh (state: GrantState, intent: RefreshIntent): Promise<Grant> {
    const callerWaiting = isCallerWaiting(intent)
    const deadline = Date.now() + (callerWaiting ? deps.waitTimeoutMs(state) : deps.backgroundWaitMs(state))
    // Claiming the flight must be synchronous when none runs: two callers in one tick would otherwise both start one.
    if (state.inflight !== undefined) {
      const joined = await join(state, intent, deadline)
      if (joined !== undefined) return joined
    }
    // A caller that waited on a joined refresh may have no time left for one of its own.
    if (callerWaiting && Date.now() >= deadline) throw refreshTimeout(state)
    const run: Promise<Grant> = cluster.run(state, intent, deadline).then(grant => {
      deps.onSuccess(state)
      return grant
    }, (err: unknown) => {
      if (!isWaitFailure(err)) deps.onFailure(state, err, intent)
      throw err
    }).finally(() => {
      // Cleared when the run settles, not when a caller stops waiting: a second run on this replica
      // must not start while the first still holds the lease.
      if (state.inflight === run) state.inflight = undefined
    })
    state.inflight = run
    return callerWaiting ? await waitFor(state, run, deadline) : await run
  }

  return { refresh }
}
