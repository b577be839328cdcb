/**
 * The broker's state, per credential and per grant key. A token credential owns a GrantState (its default
 * grant); a signing credential has no grant at all. Every mutable field of a grant's state is written
 * here, through the methods below, so a reader can see every transition in one file.
 */
import type { CredentialConfig } from '../config.js'
import { BrokerError, ProviderError } from '../errors.js'
import { expectedLifetimeSeconds } from '../providers/catalog.js'
import type { Grant, SigningAdapter, TokenAdapter } from '../providers/types.js'
import { grantKey } from './grant-identity.js'
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
  /** No on-demand provider call before this time (backoff after a failure). */
  until: number
  /** The last failure: answered again during the backoff, shown in status. */
  last: unknown
  lastAt: number
  /** The provider rejected our client credentials even after re-reading the secret; waits for a rotation. */
  permanent: ProviderError | undefined
}

const noFailures = (): Failures => ({ consecutive: 0, until: 0, last: undefined, lastAt: 0, permanent: undefined })

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
  /** When a caller's rejection report last made this replica refresh. */
  lastRejectionRefreshAt = Number.NEGATIVE_INFINITY
  secretVersion: number | undefined = undefined
  /** The lifetime the credential's tokens should have (configured or the provider's default), before any is held. */
  readonly expectedLifetimeSeconds: number | undefined
  private failures: Failures = noFailures()

  constructor (readonly credential: CredentialConfig, readonly adapter: TokenAdapter) {
    this.key = grantKey(credential)
    this.expectedLifetimeSeconds = expectedLifetimeSeconds(credential)
  }

  get consecutiveFailures (): number { return this.failures.consecutive }
  get failingUntil (): number { return this.failures.until }
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

  /** A refresh failed: counts it and sets the backoff until the next on-demand attempt. */
  recordFailure (err: unknown, now: number, backoffMs: number): void {
    this.failures.consecutive += 1
    this.failures.last = err
    this.failures.lastAt = now
    if (err instanceof ProviderError && err.kind === 'permanent') this.failures.permanent = err
    this.failures.until = now + backoffMs
  }

  clearFailures (): void {
    this.failures = noFailures()
  }

  /** A rotation or an operator asks for a new attempt at once: the backoff and a permanent rejection no longer hold. */
  allowRetryNow (): void {
    this.failures.permanent = undefined
    this.failures.until = 0
  }

  wakeWaiters (): void {
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

/** The configured credentials of this replica, by id and by grant key. */
export interface CredentialTable {
  /** The credential with this id, or CB_CREDENTIAL_NOT_FOUND. */
  entry: (credentialId: string) => CredentialEntry
  /** The token credential with this id, or CB_CREDENTIAL_NOT_FOUND / CB_UNSUPPORTED_OPERATION. */
  token: (credentialId: string) => TokenCredential
  /** The grant state of a grant key, if this replica serves it. */
  grantByKey: (key: string) => GrantState | undefined
  entries: () => IterableIterator<CredentialEntry>
  grants: () => GrantState[]
  size: number
}

export function createCredentialTable (credentials: readonly CredentialConfig[], adapterFor: (config: CredentialConfig) => TokenAdapter | SigningAdapter): CredentialTable {
  const byId = new Map<string, CredentialEntry>()
  const byKey = new Map<string, GrantState>()
  for (const config of credentials) {
    const adapter = adapterFor(config)
    if (adapter.kind === 'token') {
      const grant = new GrantState(config, adapter)
      byId.set(config.id, { mechanism: 'token', config, adapter, grant })
      byKey.set(grant.key, grant)
    } else {
      byId.set(config.id, { mechanism: 'signing', config, adapter, secretVersion: undefined })
    }
  }
  return {
    entry (credentialId) {
      const entry = byId.get(credentialId)
      if (entry === undefined) throw new BrokerError('CB_CREDENTIAL_NOT_FOUND', 'no credential with this id')
      return entry
    },
    token (credentialId) {
      const entry = this.entry(credentialId)
      if (entry.mechanism !== 'token') {
        throw new BrokerError('CB_UNSUPPORTED_OPERATION', `credential "${credentialId}" is a signing credential; it has no token (use /signatures)`)
      }
      return entry
    },
    grantByKey: key => byKey.get(key),
    entries: () => byId.values(),
    grants: () => [...byKey.values()],
    size: byId.size
  }
}
