import type { Grant } from '../providers/types.js'

/**
 * A lease on refreshing one grant key. `fence` is a number that grows with every lease ever granted
 * on that key; the store accepts a grant write only from the holder of the newest fence, so a refresher
 * whose lease expired mid-mint can never overwrite a grant written by a later lease holder.
 */
export interface Lease {
  readonly key: string
  readonly owner: string
  readonly fence: number
}

export interface StoredGrant {
  grant: Grant
  /** The fence of the lease under which it was written. */
  fence: number
}

export type StoreHealth = { state: 'up' } | { state: 'down', detail: string }

/** Where grants are shared between replicas: Redis, or process memory in embedded mode. */
export interface GrantStore {
  readonly kind: 'redis' | 'memory'
  get: (key: string) => Promise<StoredGrant | null>
  /** Take the refresh lease for a key, or null when another owner holds it. */
  acquireLease: (key: string, ttlMs: number) => Promise<Lease | null>
  /**
   * Extends a lease we hold to `ttlMs` from now, if it is still ours: true, else false (it lapsed, and may
   * be another's now). A holder renews a short lease while it works, so a holder that dies is replaced
   * within one lease period whatever the provider's latency.
   */
  renewLease: (lease: Lease, ttlMs: number) => Promise<boolean>
  /** How long the current lease on a key has left (0 when none): how long a waiter may have to wait for a holder that died. */
  leaseRemainingMs: (key: string) => Promise<number>
  /**
   * Release a lease only if we still own it (compare-and-delete). `announce`: notify listeners as a write
   * would, for a holder that wrote nothing (its refresh failed), so waiters look again at once.
   */
  releaseLease: (lease: Lease, options?: { announce?: boolean }) => Promise<void>
  /**
   * Write a grant under a lease; expires from the store when the grant expires. Returns false (and
   * writes nothing) when a newer lease was granted since.
   */
  putGrant: (lease: Lease, grant: Grant) => Promise<boolean>
  /** Drop a grant (the provider rejected it); fenced like putGrant. */
  deleteGrant: (lease: Lease) => Promise<boolean>
  /** Called with the key of every grant written by any replica (including this one). */
  /**
   * `fence` is the fence of the write the notice announces, so a replica that already holds that grant (it
   * wrote it) need not read it back; it is undefined for a delete or an announced release (look again).
   */
  onGrant: (listener: (key: string, fence?: number) => void) => () => void
  health: () => Promise<StoreHealth>
  close: () => Promise<void>
}
