/**
 * The cluster-wide single flight of one grant key: lease → re-read → mint → fenced write → release.
 *
 * The lease holder re-checks the store (another replica may have just written) and mints only if still
 * needed; everyone else waits for the holder's grant notice, or for its lease to lapse (a holder that
 * died), then looks again. Nobody polls. A refresher whose lease expired mid-mint can never overwrite a
 * newer grant: the store refuses a write from an older fence.
 */
import type { Logger } from 'pino'
import { BrokerError } from '../errors.js'
import type { Grant } from '../providers/types.js'
import type { Lease } from '../store/types.js'
import { grantFingerprint, sameToken } from './grant-identity.js'
import type { GrantState } from './grant-state.js'
import type { Lifecycle } from './lifecycle.js'
import type { Minter } from './minter.js'
import { dueAt, needsRefresh, type RefreshIntent } from './refresh-policy.js'
import type { Scheduler } from './scheduler.js'
import type { SharedStore } from './shared-store.js'
import type { BrokerObserver } from './types.js'
import type { Clock } from '../time.js'

/** Takes a grant into a grant state's cache and plans its refresh (broker.ts). */
export type Adopt = (state: GrantState, grant: Grant, fence?: number) => void

export interface ClusterRefresh {
  /** Refreshes `state` under the cluster's lease unless the newest known grant makes it unnecessary; gives up at `deadline` (Date.now() ms). */
  run: (state: GrantState, intent: RefreshIntent, deadline: number) => Promise<Grant>
}

export interface ClusterRefreshDeps {
  shared: SharedStore
  minter: Minter
  scheduler: Pick<Scheduler, 'pace'>
  adopt: Adopt
  lifecycle: Lifecycle
  clock: Clock
  log: Logger
  observer: BrokerObserver
  /** How long a lease lives unless renewed; its holder renews it every third of that while it works. */
  leaseTtlMs: (state: GrantState) => number
  /** The longest one refresh may work in all (its provider calls are aborted then). */
  workBoundMs: (state: GrantState) => number
}

export function refreshTimeout (state: GrantState): BrokerError {
  return new BrokerError('CB_REFRESH_TIMEOUT', `a refresh of credential "${state.credential.id}" is running and did not finish in time`, { retryAfterSeconds: 1 })
}

export function createClusterRefresh (deps: ClusterRefreshDeps): ClusterRefresh {
  const { shared, minter, lifecycle, clock, log, observer } = deps
  const { store } = shared
  const stale = (state: GrantState, grant: Grant | undefined, intent: RefreshIntent): boolean =>
    needsRefresh(grant, intent, clock.now(), g => dueAt(g, state.credential.refresh, state.key))

  /** Resolves when a grant notice for this key arrives, or after `ms`. Registered before the store is re-read, so no notice is missed. */
  function noticeOrTimeout (state: GrantState, ms: number): { promise: Promise<void>, cancel: () => void } {
    let wake: () => void = () => {}
    let timer: NodeJS.Timeout | undefined
    const promise = new Promise<void>(resolve => {
      wake = () => { state.waiters.delete(wake); if (timer !== undefined) clearTimeout(timer); resolve() }
      state.waiters.add(wake)
      timer = setTimeout(wake, Math.max(1, ms))
      timer.unref()
    })
    return { promise, cancel: wake }
  }

  /**
   * Mints and writes under `lease` (or keeps the grant locally when there is no lease: the store is down).
   * Returns the grant to serve and the fence it was stored under (undefined when it was not stored).
   */
  async function mintAndWrite (state: GrantState, intent: RefreshIntent, lease: Lease | undefined, previous: Grant | undefined, lost?: AbortSignal): Promise<{ grant: Grant, fence?: number }> {
    const { credential } = state
    const { grant, startedAt } = await mintOrForget(state, intent, lease, previous, lost)
    const seconds = (): number => (performance.now() - startedAt) / 1000
    // The refresh moment is chosen once, here, and stored with the grant: every replica schedules it.
    deps.scheduler.pace(state, grant)
    let fence: number | undefined
    if (lease !== undefined) {
      let written: boolean | undefined
      try {
        written = await store.putGrant(lease, grant)
      } catch (err) {
        shared.noteFailure(err) // kept locally; the store gets the next grant
      }
      if (written === false) {
        // A newer lease holder wrote (or is writing) a grant; ours must not overwrite it. Serve whichever
        // lives longer: ours is a valid token too, only not the cluster's shared one.
        observer.refreshed?.(credential.provider, credential.id, 'fenced_out', intent.reason, seconds())
        log.warn({ credentialId: credential.id }, 'grant write fenced out by a newer lease')
        const stored = await shared.read(state.key)
        if (stored !== undefined && stored.grant.expiresAt >= grant.expiresAt) return { grant: stored.grant, fence: stored.fence }
        return { grant }
      }
      if (written === true) fence = lease.fence
    }
    observer.refreshed?.(credential.provider, credential.id, 'success', intent.reason, seconds())
    log.info({ credentialId: credential.id, reason: intent.reason, expiresAt: new Date(grant.expiresAt).toISOString(), fingerprint: grantFingerprint(grant) }, 'grant refreshed')
    return { grant, fence }
  }

  /**
   * The mint, and when a caller's rejection report could not be answered with a new token, forget the
   * rejected one: it must not be served again (docs/providers.md: Kivra 40015 → drop the cached token).
   */
  async function mintOrForget (state: GrantState, intent: RefreshIntent, lease: Lease | undefined, previous: Grant | undefined, lost?: AbortSignal): ReturnType<Minter['mint']> {
    try {
      return await minter.mint(state, intent, previous, deps.workBoundMs(state), lost)
    } catch (err) {
      // The lease lapsed under us (this replica stalled, or Redis lost it): another replica refreshes now.
      if (lost?.aborted === true) throw new BrokerError('CB_REFRESH_TIMEOUT', `the refresh lease of credential "${state.credential.id}" was lost; another replica refreshes`, { retryAfterSeconds: 1, cause: err })
      if (intent.reason === 'rejected' && intent.rejectedToken !== undefined) {
        if (lease !== undefined) await store.deleteGrant(lease).catch(() => false)
        if (state.held !== undefined && sameToken(state.held.accessToken, intent.rejectedToken)) state.forget()
      }
      throw err
    }
  }

  /**
   * Keeps a lease alive while its holder works: renewed every third of its life, so a holder that dies is
   * replaced within one lease period however slow the provider is. A renewal that finds the lease gone
   * (this replica stalled past it) aborts the work: another replica holds the lease and will refresh.
   * A renewal that cannot reach Redis changes nothing: no other replica can take the lease either.
   */
  function keepLease (state: GrantState, lease: Lease): { lost: AbortSignal, stop: () => void } {
    const ttl = deps.leaseTtlMs(state)
    const lost = new AbortController()
    const timer = setInterval(() => {
      store.renewLease(lease, ttl).then(ours => {
        if (ours || lost.signal.aborted) return
        log.warn({ credentialId: state.credential.id }, 'refresh lease lost while refreshing; another replica takes over')
        lost.abort(new DOMException('the refresh lease was lost', 'AbortError'))
      }, () => { /* Redis unreachable: nobody can take the lease now */ })
    }, Math.max(100, Math.floor(ttl / 3)))
    timer.unref()
    return { lost: lost.signal, stop: () => { clearInterval(timer) } }
  }

  /** Under the lease: judge the newest grant known, mint if still needed, release (announcing a failure). */
  async function asHolder (state: GrantState, intent: RefreshIntent, lease: Lease): Promise<Grant> {
    // A write announces itself; anything else (nothing needed, a failure) is announced on release.
    let wrote = false
    const kept = keepLease(state, lease)
    try {
      // Judge the newest grant known: the stored one if it is newer (adopted), else the one held here.
      // The timer that started a proactive refresh was set from the held grant; judging an older
      // stored one instead could find nothing due and re-arm the same timer in a loop.
      const stored = await shared.read(state.key)
      if (stored !== undefined) deps.adopt(state, stored.grant, stored.fence)
      const current = state.held ?? stored?.grant
      if (current !== undefined && !stale(state, current, intent)) return current
      const minted = await mintAndWrite(state, intent, lease, current, kept.lost)
      wrote = minted.fence === lease.fence
      deps.adopt(state, minted.grant, minted.fence)
      return minted.grant
    } finally {
      kept.stop()
      await store.releaseLease(lease, { announce: !wrote }).catch(err => { log.warn({ err, credentialId: state.credential.id }, 'could not release lease') })
    }
  }

  /** Store down: no cluster-wide lease is possible. Mint on this replica alone (its own single flight still holds). */
  async function alone (state: GrantState, intent: RefreshIntent): Promise<Grant> {
    if (state.held !== undefined && !stale(state, state.held, intent)) return state.held
    const minted = await mintAndWrite(state, intent, undefined, state.held)
    deps.adopt(state, minted.grant)
    return minted.grant
  }

  async function run (state: GrantState, intent: RefreshIntent, deadline: number): Promise<Grant> {
    for (let attempt = 0; ; attempt++) {
      if (lifecycle.closing) throw new BrokerError('CB_NOT_READY', 'the broker is shutting down', { retryAfterSeconds: 1 })
      // After a wait, never start a provider call past the caller's deadline.
      if (attempt > 0 && Date.now() >= deadline) throw refreshTimeout(state)
      const heard = state.notices
      let lease: Lease | null
      try {
        lease = await store.acquireLease(state.key, deps.leaseTtlMs(state))
      } catch (err) {
        shared.noteFailure(err)
        return await alone(state, intent)
      }
      if (lease !== null) return await asHolder(state, intent, lease)
      observer.leaseContention?.(state.credential.id)
      const remaining = deadline - Date.now()
      if (remaining <= 0) throw refreshTimeout(state)
      // Wait for the holder's notice, but no longer than its lease has left: a holder that died is
      // replaced as soon as its lease lapses, not a whole lease period later.
      const leaseLeft = await store.leaseRemainingMs(state.key).catch(() => deps.leaseTtlMs(state))
      const notice = noticeOrTimeout(state, Math.min(remaining, leaseLeft + 25))
      const stored = await shared.read(state.key)
      if (stored !== undefined && !stale(state, stored.grant, intent)) {
        notice.cancel()
        deps.adopt(state, stored.grant, stored.fence)
        return stored.grant
      }
      // The holder may have finished while we asked for its lease: its notice (a failure announces
      // itself without a write) can arrive before our waiter was registered. Then look again at once
      // instead of waiting out a lease that is already gone.
      if (state.notices !== heard) {
        notice.cancel()
        continue
      }
      await notice.promise
    }
  }

  return { run }
}
