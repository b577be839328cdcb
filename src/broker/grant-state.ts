/**
 * The broker's state, per credential and per grant key. A token credential owns a GrantState for its
 * default grant, and more for its variants (narrower scopes, Kigo user sessions; credential-table.ts);
 * a signing credential has no grant at all. Every mutable field of a grant's state is written here,
 * through the methods below, so a reader can see every transition in one file.
 */
import type { CredentialConfig } from '../config.js'
import { BrokerError, ProviderError } from '../errors.js'
import { expectedLifetimeSeconds } from '../providers/catalog.js'
import type { Grant, SigningAdapter, TokenAdapter } from '../providers/types.js'
import { variantGrantKey, type GrantVariant } from './grant-identity.js'
import { dueAt } from './refresh-policy.js'
import type { CredentialStatus } from './types.js'

export interface TokenCredential {
  readonly mechanism: 'token'
  readonly config: CredentialConfig
  readonly adapter: TokenAdapter
  /** The credential's default grant. */
  readonly grant: GrantState
}

export interface SigningCredential {
  readonly mechanism: 'signing'
  readonly config: CredentialConfig
  readonly adapter: SigningAdapter
  /** Version of the secret last used to sign (status shows it). */
  secretVersion: number | undefined
}

export type CredentialEntry = TokenCredential | SigningCredential

/** The failure history of a grant key since its last success. */
interface Failures {
  consecutive: number
  /**
   * No attempt for this grant key before this time: a rejected secret's next probe, or a short pause after
   * a failure that was not the provider's (Vault). Transient provider failures leave it 0: the endpoint's
   * breaker is their schedule.
   */
  retryAt: number
  /** The last failure: answered again until the next attempt, shown in status. */
  last: unknown
  lastAt: number
  /** The provider rejected our client credentials even after re-reading the secret; probed on its own schedule. */
  permanent: ProviderError | undefined
  /** Consecutive permanent rejections, for the probe's backoff. */
  permanentRejections: number
}

const noFailures = (): Failures => ({ consecutive: 0, retryAt: 0, last: undefined, lastAt: 0, permanent: undefined, permanentRejections: 0 })

/** One grant key's state on this replica: the grant held, its schedule, the refresh in flight, the failures. */
export class GrantState {
  readonly key: string
  /** The grant held in the local cache. */
  held: Grant | undefined = undefined
  /** Fence of the store write the held grant came from (-1: none, or minted while the store was down). */
  fence = -1
  /** When the held grant is due for proactive refresh. */
  plannedAt = Number.POSITIVE_INFINITY
  /** The refresh running on this replica; every caller and timer on this replica joins it. */
  inflight: Promise<Grant> | undefined = undefined
  /** Woken by a grant notice for this key (another replica's refresh finished). */
  readonly waiters = new Set<() => void>()
  /** How many grant notices for this key this replica has heard: a waiter registered late can tell it missed one. */
  notices = 0
  /** When a caller's rejection report last made this replica refresh. */
  lastRejectionRefreshAt = Number.NEGATIVE_INFINITY
  secretVersion: number | undefined = undefined
  /** When a caller last asked for this grant (scoped grants are refreshed only while they are asked for). */
  lastRequestedAt = Number.NEGATIVE_INFINITY
  /** The lifetime the credential's tokens should have (configured or the provider's default), before any is held. */
  readonly expectedLifetimeSeconds: number | undefined
  private failures: Failures = noFailures()

  /**
   * `credential` is the configuration the grant is minted with: the credential's own, with the scope
   * replaced for a scoped variant. `adapter` mints it (a Kigo user session has an adapter of its own).
   */
  constructor (readonly credential: CredentialConfig, readonly adapter: TokenAdapter, readonly variant: GrantVariant = { kind: 'default' }) {
    this.key = variantGrantKey(credential, variant)
    this.expectedLifetimeSeconds = expectedLifetimeSeconds(credential)
  }

  get consecutiveFailures (): number { return this.failures.consecutive }
  get retryAt (): number { return this.failures.retryAt }
  get permanentRejections (): number { return this.failures.permanentRejections }
  get lastFailure (): unknown { return this.failures.last }
  get permanent (): ProviderError | undefined { return this.failures.permanent }

  /**
   * Takes a grant into the local cache if it is newer, and plans its proactive refresh. "Newer" is a
   * higher fence (written under a later lease, whatever the clocks of the replicas say) or a longer life
   * (a grant minted while the store was down, or fences that restarted with an empty Redis). Returns
   * whether the grant was taken.
   */
  adopt (grant: Grant, fence: number | undefined, now: number): boolean {
    const current = this.held
    const newer = current === undefined || current.expiresAt <= now ||
      (fence !== undefined && fence > this.fence) || grant.expiresAt > current.expiresAt
    if (!newer) return false
    // A newer grant (often from another replica) proves the credential works again.
    if (current !== undefined && current.accessToken !== grant.accessToken && this.inflight === undefined) this.clearFailures()
    this.held = grant
    this.fence = fence ?? this.fence
    if (grant.secretVersion !== undefined) this.secretVersion = grant.secretVersion
    this.plannedAt = dueAt(grant, this.credential.refresh, this.key)
    return true
  }

  /** Drops the held grant (the provider rejected it and no replacement could be had). */
  forget (): void {
    this.held = undefined
  }

  /** A refresh failed: counts it; `retryInMs` is this grant key's own pause before the next attempt (0: none). */
  recordFailure (err: unknown, now: number, retryInMs: number): void {
    this.failures.consecutive += 1
    this.failures.last = err
    this.failures.lastAt = now
    // A refused user session is not parked like a rejected secret: the next request may bring other details.
    if (err instanceof ProviderError && err.kind === 'permanent' && this.variant.kind !== 'user') {
      this.failures.permanent = err
      this.failures.permanentRejections += 1
    }
    this.failures.retryAt = now + retryInMs
  }

  clearFailures (): void {
    this.failures = noFailures()
  }

  /** A rotation or an operator asks for a new attempt at once: the backoff and a permanent rejection no longer hold. */
  allowRetryNow (): void {
    this.failures.permanent = undefined
    this.failures.retryAt = 0
  }

  /**
   * Whether the proactive refresh due now should run. Default grants always; a scoped grant only while it
   * was asked for since its current grant was obtained (then it is left to expire); a user session never
   * (it is refreshed on demand).
   */
  wantsProactiveRefresh (): boolean {
    if (this.variant.kind === 'default') return true
    if (this.variant.kind === 'user') return false
    return this.held !== undefined && this.lastRequestedAt >= this.held.obtainedAt
  }

  /** A grant state that may be forgotten locally: nothing waits on it (the store still holds its grant). */
  get idle (): boolean {
    return this.inflight === undefined && this.waiters.size === 0
  }

  wakeWaiters (): void {
    this.notices += 1
    for (const wake of this.waiters) wake()
  }

  /** What status shows of the last failure: its kind and the provider's code, never a message or body. */
  lastError (): CredentialStatus['lastError'] {
    const err = this.failures.last
    if (err === undefined) return undefined
    const providerError = err instanceof ProviderError ? err : undefined
    return { kind: providerError?.kind ?? (err instanceof BrokerError ? err.code : 'internal'), providerCode: providerError?.providerCode, at: this.failures.lastAt }
  }
}
