/**
 * The token requests callers make: a token with at least min_ttl left (from memory, the store, or one
 * refresh), a report that the provider rejected a token, an operator's forced refresh; and how an engine
 * failure is answered (the BrokerError a caller sees).
 */
import { BrokerError, CircuitOpenError, ProviderError } from '../errors.js'
import { descriptorOf } from '../providers/catalog.js'
import type { Grant } from '../providers/types.js'
import type { Clock } from '../time.js'
import type { Adopt } from './cluster-refresh.js'
import type { CredentialTable } from './credential-table.js'
import { normalizeScope, sameToken, type SessionUser } from './grant-identity.js'
import type { GrantState, TokenCredential } from './grant-state.js'
import { defaultMinTtlSeconds, minTtlFits, neededUntil, rejectionRefreshIntervalMs, serves } from './refresh-policy.js'
import type { SharedStore } from './shared-store.js'
import type { SingleFlight } from './single-flight.js'
import type { Broker, BrokerObserver, IssuedToken } from './types.js'

export type TokenService = Pick<Broker, 'getToken' | 'peekToken' | 'userSession' | 'reportRejected' | 'forceRefresh'> & {
  /** A credential's own grant for use inside the broker (a Kigo partner token), with `minTtlSeconds` left; not counted as a caller's request. */
  ownGrant: (credential: TokenCredential, minTtlSeconds: number) => Promise<Grant>
  /** The provider refused `rejectedToken` (a credential's own grant): one deduplicated refresh, answering the new grant. */
  replaceOwnGrant: (credential: TokenCredential, rejectedToken: string) => Promise<Grant>
}

export interface TokenServiceDeps {
  table: CredentialTable
  shared: SharedStore
  flights: SingleFlight
  adopt: Adopt
  clock: Clock
  observer: BrokerObserver
  /** How long a grant key must still wait before its next attempt (its own pause, or its endpoint breaker's). */
  waitMs: (state: GrantState) => number
  /** Overrides the rejection-refresh interval (tests); default min(30 s, 10 % of the lifetime). */
  rejectionRefreshIntervalMs?: number | undefined
}

/** Upper bound of min_ttl when neither configuration nor the provider's documentation gives a lifetime. */
const maxMinTtlSeconds = 86_400

const lifetimeMsOf = (grant: Grant): number => grant.expiresAt - grant.obtainedAt

/** A grant and where it came from, before it is issued to a caller. */
type Served = Pick<IssuedToken, 'grant' | 'source'>

/**
 * The BrokerError a caller sees for a failure of the engine: a provider error becomes a stable code, and
 * every answer that may change says when to try again. `waitMs` is how long the grant key's schedule
 * still holds off the next attempt (a floor of Retry-After).
 */
export function toBrokerError (credentialId: string, err: unknown, waitMs = 0): unknown {
  if (err instanceof BrokerError) return err
  if (!(err instanceof ProviderError)) return err
  const retryAfterSeconds = Math.max(1, Math.ceil(Math.max(err.retryAfterMs ?? 0, waitMs) / 1000))
  if (err.kind === 'permanent') {
    return new BrokerError('CB_PROVIDER_REJECTED_CREDENTIALS', `the provider rejected the client credentials of "${credentialId}"${err.providerCode === undefined ? '' : ` (provider code ${err.providerCode})`}; the secret needs rotating`, { cause: err, retryAfterSeconds, extensions: { provider_code: err.providerCode } })
  }
  if (err.kind === 'bad-response') {
    return new BrokerError('CB_PROVIDER_BAD_RESPONSE', `the provider of "${credentialId}" answered something the broker cannot use, and no grant with enough life is held`, { cause: err, retryAfterSeconds })
  }
  return new BrokerError('CB_PROVIDER_UNAVAILABLE', `the provider of "${credentialId}" is unavailable and no grant with enough life is held`, { cause: err, retryAfterSeconds })
}

export function createTokenService (deps: TokenServiceDeps): TokenService {
  const { table, shared, flights, clock, observer } = deps

  /** What a caller sees of a failure of this grant key: a refused user session is not a rejected client secret. */
  function answerFor (state: GrantState, err: unknown): unknown {
    if (state.variant.kind === 'user' && err instanceof ProviderError && err.kind === 'permanent') {
      return new BrokerError('CB_USER_SESSION_REFUSED', `the provider refused the user session of "${state.credential.id}" (HTTP ${err.status ?? 'error'})`, { cause: err, extensions: { provider_status: err.status } })
    }
    return toBrokerError(state.credential.id, err, deps.waitMs(state))
  }

  function issue (credentialId: string, served: Served, started: number): IssuedToken {
    observer.tokenServed?.(credentialId, served.source, (performance.now() - started) / 1000)
    // Spelled out, not spread: a spread here was about 2 µs of a cache hit (V8's slow path for it).
    return { grant: served.grant, source: served.source, expiresIn: Math.max(0, Math.floor((served.grant.expiresAt - clock.now()) / 1000)) }
  }

  function failed (credentialId: string, started: number, err: unknown): unknown {
    observer.tokenServed?.(credentialId, 'error', (performance.now() - started) / 1000)
    return err
  }

  /**
   * While this grant key's schedule holds off the next attempt (its own pause, or its endpoint's breaker),
   * answer at once with when to try again, rather than letting callers drive the provider harder. A
   * refresh already running on this replica is joined instead.
   */
  function backoffAnswer (state: GrantState): BrokerError | undefined {
    if (state.inflight !== undefined) return undefined
    const waitMs = deps.waitMs(state)
    if (waitMs <= 0) return undefined
    const last = state.permanent ?? state.lastFailure ?? new CircuitOpenError(waitMs)
    const answer = answerFor(state, last)
    return answer instanceof BrokerError ? answer : new BrokerError('CB_PROVIDER_UNAVAILABLE', `the provider of "${state.credential.id}" is failing and no grant with enough life is held`, { retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) })
  }

  function unsatisfiable (state: GrantState, minTtlSeconds: number, grant: Grant, fresh: boolean): BrokerError {
    const lifetime = Math.floor(lifetimeMsOf(grant) / 1000)
    const detail = fresh
      ? `min_ttl ${minTtlSeconds} s cannot be met: the newest grant of "${state.credential.id}" lives ${lifetime} s in all`
      : `min_ttl ${minTtlSeconds} s is too close to the ${lifetime} s lifetime of "${state.credential.id}"'s grants`
    return new BrokerError('CB_MIN_TTL_UNSATISFIABLE', detail, { extensions: { lifetime_seconds: lifetime } })
  }

  /** A miss or a grant too short for the caller: the store, else one refresh (shared by the replica and the cluster). */
  async function slowPath (state: GrantState, requestedMinTtl: number | undefined, minTtlSeconds: number): Promise<Served> {
    const stored = await shared.read(state.key)
    if (stored !== undefined && serves(stored.grant, minTtlSeconds, clock.now())) {
      deps.adopt(state, stored.grant, stored.fence)
      return { grant: stored.grant, source: 'store' }
    }
    const waiting = backoffAnswer(state)
    if (waiting !== undefined) throw waiting
    const known = state.held ?? stored?.grant
    if (known !== undefined && !minTtlFits(minTtlSeconds, lifetimeMsOf(known))) throw unsatisfiable(state, minTtlSeconds, known, false)
    let grant: Grant
    try {
      grant = await flights.refresh(state, { reason: 'on_demand', neededUntil: neededUntil(minTtlSeconds, clock.now()) })
    } catch (err) {
      throw answerFor(state, err)
    }
    // A caller that named no min_ttl gets the default of the lifetime its provider really gives.
    const judged = requestedMinTtl ?? defaultMinTtlSeconds(lifetimeMsOf(grant) / 1000)
    if (!serves(grant, judged, clock.now())) throw unsatisfiable(state, judged, grant, true)
    return { grant, source: 'refreshed' }
  }

  /**
   * A grant of `state` that serves the caller: from memory with no I/O when the held grant has enough
   * life — even if a refresh is due or failing (the advisory window, stale-if-error), never once it has
   * not — else through the slow path.
   */
  async function obtain (state: GrantState, requestedMinTtl: number | undefined): Promise<Served> {
    const held = state.held
    const minTtlSeconds = requestedMinTtl ?? defaultMinTtlSeconds(held === undefined ? state.expectedLifetimeSeconds : lifetimeMsOf(held) / 1000)
    const now = clock.now()
    state.lastRequestedAt = now
    if (held !== undefined && serves(held, minTtlSeconds, now)) {
      return { grant: held, source: state.consecutiveFailures > 0 && now >= state.plannedAt ? 'stale' : 'local' }
    }
    return await slowPath(state, requestedMinTtl, minTtlSeconds)
  }

  /** An explicit min_ttl longer than the credential's tokens are expected to live is a bad parameter. */
  function checkMinTtl (state: GrantState, requestedMinTtl: number | undefined): void {
    if (requestedMinTtl === undefined) return
    const bound = state.expectedLifetimeSeconds ?? maxMinTtlSeconds
    if (requestedMinTtl > bound) throw new BrokerError('CB_BAD_REQUEST', `min_ttl must be between 0 and the credential's lifetime (${bound} s)`)
  }

  /** The grant state of a scope set the credential allows: 409 for providers without scopes, 403 for a scope not in allowed_scopes. */
  function scopedState (credential: TokenCredential, requested: string): GrantState {
    const { config } = credential
    if (!descriptorOf(config.provider).acceptsScope) {
      throw new BrokerError('CB_UNSUPPORTED_OPERATION', `${config.provider} tokens take no scope`)
    }
    const scope = normalizeScope(requested)
    if (scope === '') throw new BrokerError('CB_BAD_REQUEST', 'scope names no scope')
    // The credential's own scope set is its default grant.
    if (scope === normalizeScope(config.scope ?? '')) return credential.grant
    const refused = scope.split(' ').filter(part => !config.allowed_scopes.includes(part))
    if (refused.length > 0) throw new BrokerError('CB_SCOPE_NOT_ALLOWED', `credential "${config.id}" does not allow the scope${refused.length > 1 ? 's' : ''} ${refused.map(part => `"${part}"`).join(', ')} (allowed_scopes)`)
    return table.scoped(credential, scope)
  }

  async function served (credentialId: string, resolve: () => GrantState, requestedMinTtl: number | undefined): Promise<IssuedToken> {
    const started = performance.now()
    const state = resolve()
    checkMinTtl(state, requestedMinTtl)
    try {
      return issue(credentialId, await obtain(state, requestedMinTtl), started)
    } catch (err) {
      throw failed(credentialId, started, err)
    }
  }

  return {
    peekToken (credentialId, requestedMinTtl, admit) {
      const started = performance.now()
      const state = table.findToken(credentialId)?.grant
      const held = state?.held
      if (state === undefined || held === undefined) return undefined
      // Out of bounds is a 400 that getToken words; not a cache hit.
      if (requestedMinTtl !== undefined && requestedMinTtl > (state.expectedLifetimeSeconds ?? maxMinTtlSeconds)) return undefined
      const now = clock.now()
      if (!serves(held, requestedMinTtl ?? defaultMinTtlSeconds(lifetimeMsOf(held) / 1000), now)) return undefined
      if (admit !== undefined && !admit()) return undefined
      // The same bookkeeping and answer as obtain() on a local hit.
      state.lastRequestedAt = now
      return issue(credentialId, { grant: held, source: state.consecutiveFailures > 0 && now >= state.plannedAt ? 'stale' : 'local' }, started)
    },

    async getToken (credentialId, requestedMinTtl, options) {
      const scope = options?.scope
      return await served(credentialId, () => {
        const credential = table.token(credentialId)
        return scope === undefined ? credential.grant : scopedState(credential, scope)
      }, requestedMinTtl)
    },

    async userSession (credentialId: string, user: SessionUser, requestedMinTtl?: number) {
      return await served(credentialId, () => {
        const credential = table.token(credentialId)
        if (descriptorOf(credential.config.provider).userSessions === undefined) {
          throw new BrokerError('CB_UNSUPPORTED_OPERATION', `${credential.config.provider} has no user sessions (Kigo credentials only)`)
        }
        return table.userSession(credential, user)
      }, requestedMinTtl)
    },

    async ownGrant (credential, minTtlSeconds) {
      return (await obtain(credential.grant, minTtlSeconds)).grant
    },

    async replaceOwnGrant (credential, rejectedToken) {
      try {
        return await flights.refresh(credential.grant, { reason: 'rejected', rejectedToken })
      } catch (err) {
        throw answerFor(credential.grant, err)
      }
    },

    async reportRejected (credentialId, rejectedToken) {
      const started = performance.now()
      const state = table.token(credentialId).grant
      const current = state.held ?? (await shared.read(state.key))?.grant
      // Only the token we hand out now can force a refresh; a report about an older one is already handled.
      if (current !== undefined && !sameToken(current.accessToken, rejectedToken) && current.expiresAt > clock.now()) {
        return issue(credentialId, { grant: current, source: 'local' }, started)
      }
      // A caller that reports every token it gets (its 403 is about something else: scope, tenant)
      // must not drive the provider: at most one rejection-driven refresh per interval per replica.
      // (Reports arriving while that refresh runs join it.)
      const interval = deps.rejectionRefreshIntervalMs ?? rejectionRefreshIntervalMs(current === undefined ? 0 : lifetimeMsOf(current))
      const sinceLast = clock.now() - state.lastRejectionRefreshAt
      if (current !== undefined && state.inflight === undefined && sinceLast < interval) {
        throw failed(credentialId, started, new BrokerError('CB_RATE_LIMITED', `credential "${credentialId}" was refreshed on a rejection report moments ago; one such refresh per ${Math.ceil(interval / 1000)} s`, { retryAfterSeconds: Math.max(1, Math.ceil((interval - sinceLast) / 1000)) }))
      }
      const waiting = backoffAnswer(state)
      if (waiting !== undefined) throw waiting
      state.lastRejectionRefreshAt = clock.now()
      try {
        return issue(credentialId, { grant: await flights.refresh(state, { reason: 'rejected', rejectedToken }), source: 'refreshed' }, started)
      } catch (err) {
        throw failed(credentialId, started, answerFor(state, err))
      }
    },

    async forceRefresh (credentialId) {
      const state = table.token(credentialId).grant
      state.allowRetryNow()
      try {
        const grant = await flights.refresh(state, { reason: 'forced', requestedAt: clock.now() })
        return { grant, source: 'refreshed', expiresIn: Math.max(0, Math.floor((grant.expiresAt - clock.now()) / 1000)) }
      } catch (err) {
        throw answerFor(state, err)
      }
    }
  }
}
