import { createHash, timingSafeEqual } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import type { Logger } from 'pino'
import type { CredentialConfig, ProviderKind } from '../config.js'
import { BrokerError } from '../errors.js'
import { ProviderError, type Grant, type ProviderAdapter, type ProviderContext, type SecretData, type SigningAdapter, type TokenAdapter, type WebhookVerifier } from '../providers/types.js'
import { SecretError, type SecretSourceHealth, type SecretValue } from '../secrets/types.js'
import type { GrantStore, Lease, StoredGrant } from '../store/types.js'
import { backoffDelayMs, defaultBackoff, type BackoffPolicy } from './backoff.js'
import { createCircuitBreaker, type CircuitBreaker, type CircuitState } from './circuit-breaker.js'
import { systemClock, type Clock } from './clock.js'
import { createLimiter } from './limiter.js'
import { createTimerHeap } from './timer-heap.js'
import { createRefreshPacer, type PacerOptions } from './pacer.js'
import type { Broker, BrokerHealth, CredentialStatus, IssuedToken, TokenSource } from './types.js'

/** What the broker needs of the secret layer (src/secrets/secret-manager.ts). */
export interface BrokerSecrets {
  get: (path: string) => Promise<SecretValue>
  reread: (path: string) => Promise<SecretValue>
  onRotation: (listener: (path: string, version: number) => void) => () => void
  health: () => SecretSourceHealth
  close: () => Promise<void>
}

/** What the broker needs of the provider registry (src/providers/registry.ts). */
export interface BrokerProviders {
  adapterFor: (kind: ProviderKind) => ProviderAdapter
  webhookVerifierFor: (kind: ProviderKind) => WebhookVerifier | undefined
}

export type RefreshReason = 'proactive' | 'on_demand' | 'rejected' | 'rotation' | 'forced'
export type RefreshResult = 'success' | 'transient_error' | 'permanent_error' | 'fenced_out'

/** Hooks for metrics; every argument is a credential id or provider kind, never a secret. */
export interface BrokerObserver {
  tokenServed?: (credentialId: string, source: TokenSource | 'error', seconds: number) => void
  refreshed?: (provider: ProviderKind, credentialId: string, result: RefreshResult, reason: RefreshReason, seconds: number) => void
  leaseContention?: (credentialId: string) => void
  breakerState?: (provider: ProviderKind, state: CircuitState, endpoint: string) => void
  rotated?: (credentialId: string) => void
}

export interface BrokerOptions {
  /** Lease on one refresh. Default 2 × timeout_ms + 10 s: long enough for a refresh, a fallback mint and a secret read. */
  leaseTtlMs?: number
  /** Longest an on-demand caller waits for a refresh (its own or another replica's). Default timeout_ms + 5 s. */
  waitTimeoutMs?: number
  /** Proactive refreshes running at once per replica, so a cold start of 10,000 credentials is not a burst. */
  maxConcurrentRefreshes?: number
  backoff?: BackoffPolicy
  /** Consecutive transient failures that open a provider's circuit. */
  breakerFailureThreshold?: number
  breakerCooldownMs?: number
  /** Least time between two refreshes forced by rejection reports, per replica. Default min(30 s, 10 % of the lifetime). */
  rejectionRefreshIntervalMs?: number
  /** Tolerance for webhook timestamps. */
  webhookToleranceSeconds?: number
  /** Spreading of proactive refreshes (see pacer.ts); false runs each one at its planned time. */
  pacing?: PacerOptions | false
  random?: () => number
}

export interface BrokerDeps {
  credentials: readonly CredentialConfig[]
  store: GrantStore
  secrets: BrokerSecrets
  secretsKind: 'vault' | 'file'
  providers: BrokerProviders
  log: Logger
  clock?: Clock
  observer?: BrokerObserver
  options?: BrokerOptions
}

interface Entry {
  readonly credential: CredentialConfig
  readonly adapter: ProviderAdapter
  /** Store key: the credential id plus a hash of everything that shapes its grant, so a config change never serves an old grant. */
  readonly key: string
  local: Grant | undefined
  /** When the local grant is due for proactive refresh. */
  plannedAt: number
  inflight: Promise<Grant> | undefined
  /** Woken by a grant notice for this key (another replica's refresh finished). */
  readonly waiters: Set<() => void>
  consecutiveFailures: number
  /** No on-demand provider call before this time (backoff after a failure). */
  failingUntil: number
  /** The last refresh failure (undefined once a refresh succeeds): answered again during the backoff, shown in status. */
  lastFailure: unknown
  lastFailureAt: number
  /** Fence of the store write the local grant came from (-1: none, or minted while the store was down). */
  fence: number
  /** When a caller's rejection report last made this replica refresh. */
  lastRejectionRefreshAt: number
  /** The provider rejected our client credentials even after re-reading the secret; waits for a rotation. */
  permanent: ProviderError | undefined
  secretVersion: number | undefined
}

interface RefreshIntent {
  reason: RefreshReason
  /** on_demand: the caller needs a grant valid until at least this time. */
  neededUntil?: number
  rejectedToken?: string
  secretVersion?: number
  requestedAt?: number
}

/**
 * A grant is served only with at least min_ttl plus this left, so the `expires_in` a caller reads
 * (whole seconds, rounded down, computed a moment later) is never below the min_ttl it asked for.
 */
const servingMarginMs = 1000

/** Floor of the time between two refreshes of one grant, whatever its lifetime. */
const minRefreshIntervalMs = 1000
/** The share of a grant's lifetime before which the pacer never moves its refresh (see earliestRefreshAt). */
const pacingFloorRatio = 0.4

/** Shortest a grant must live before an on-demand refresh may replace it: stops a min_ttl near the lifetime from causing a mint per request. */
const minGrantAgeFraction = 0.1
const minGrantAgeCapMs = 30_000
/** Longest interval between two refreshes forced by callers' rejection reports (shorter for short lifetimes). */
const rejectionRefreshIntervalCapMs = 30_000

/** A short, non-reversible name for a token, for logs and operators: 12 characters of its SHA-256. */
export function fingerprint (token: string): string {
  return createHash('sha256').update(token).digest('base64url').slice(0, 12)
}

const fingerprints = new WeakMap<Grant, string>()

/** fingerprint() of a grant's token, computed once per grant (it is logged for every token handed out). */
export function grantFingerprint (grant: Grant): string {
  let value = fingerprints.get(grant)
  if (value === undefined) {
    value = fingerprint(grant.accessToken)
    fingerprints.set(grant, value)
  }
  return value
}

function sameToken (a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest()
  const hb = createHash('sha256').update(b).digest()
  return timingSafeEqual(ha, hb)
}

/** A number in [0, 1) derived from the input, so every replica computes the same jitter for a grant. */
function unitHash (input: string): number {
  return createHash('sha256').update(input).digest().readUInt32BE(0) / 2 ** 32
}

/** The store key of a credential's grant: its id and a hash of everything that shapes the grant. */
export function grantKey (credential: CredentialConfig): string {
  const shape = JSON.stringify([credential.provider, credential.environment, credential.base_url, credential.token_url,
    credential.client_auth, credential.scope, credential.audience, credential.secret, credential.lifetime_seconds])
  return `${credential.id}#${createHash('sha256').update(shape).digest('hex').slice(0, 8)}`
}

/**
 * When a grant should be refreshed: min(obtainedAt + ratio × lifetime, expiresAt − margin), moved by a
 * jitter of ±jitter_ratio × lifetime, then clamped into [50 %, 95 %] of the lifetime. The clamp matters
 * for short lifetimes: a 5-minute margin on a 60-second token would put the refresh before the grant was
 * even obtained, and the engine would refresh in a loop. The jitter is a hash of the grant, not a random
 * draw, so all replicas agree on the moment and only one of them mints.
 */
export function plannedRefreshAt (grant: Pick<Grant, 'obtainedAt' | 'expiresAt'>, policy: CredentialConfig['refresh'], key: string): number {
  const lifetime = Math.max(0, grant.expiresAt - grant.obtainedAt)
  const byRatio = grant.obtainedAt + policy.ratio * lifetime
  const byMargin = grant.expiresAt - policy.margin_seconds * 1000
  const jitter = (unitHash(`${key}:${grant.obtainedAt}`) * 2 - 1) * policy.jitter_ratio * lifetime
  const at = Math.min(byRatio, byMargin) + jitter
  const clamped = Math.min(Math.max(at, grant.obtainedAt + 0.5 * lifetime), grant.obtainedAt + 0.95 * lifetime)
  // However short the lifetime, never more than one refresh per minRefreshIntervalMs.
  return Math.max(clamped, grant.obtainedAt + minRefreshIntervalMs)
}

/**
 * The earliest moment the pacer may move a proactive refresh to: 40 % of the grant's lifetime, a little
 * below plannedRefreshAt's own lower clamp (50 %). The extra room lets the waves of different lifetimes
 * that meet after a cold start spread out fully (bench/README.md, scale); a grant refreshed that early
 * still had most of its life left, so it costs a mint, never a token.
 */
export function earliestRefreshAt (grant: Grant): number {
  const lifetime = Math.max(0, grant.expiresAt - grant.obtainedAt)
  return grant.obtainedAt + Math.max(pacingFloorRatio * lifetime, minRefreshIntervalMs)
}

/** Intents with a caller waiting on the answer: bounded by waitTimeoutMs, not by the lease. */
function isCallerWaiting (intent: RefreshIntent): boolean {
  return intent.reason === 'on_demand' || intent.reason === 'rejected'
}

function isStoreError (err: unknown): boolean {
  return err instanceof Error && err.name === 'StoreError'
}

/**
 * The token lifecycle: local cache → shared store → one refresh under a lease, proactive refresh on a
 * timer heap, backoff and circuit breaking on failure, and stale-if-error bounded by the caller's min_ttl.
 */
export function createBroker (deps: BrokerDeps): Broker {
  const { store, secrets, providers, log } = deps
  const clock = deps.clock ?? systemClock
  const observer = deps.observer ?? {}
  const options = deps.options ?? {}
  const random = options.random ?? Math.random
  const backoff = options.backoff ?? defaultBackoff
  const limit = createLimiter(options.maxConcurrentRefreshes ?? 16)
  const shutdown = new AbortController()
  // Every mint in flight listens for shutdown, and mints are single-flighted per credential: up to one per
  // credential at a time is expected, not a leak, and must not print a warning at a cold start. More would be.
  setMaxListeners(Math.max(10, deps.credentials.length + 10), shutdown.signal)
  const entries = new Map<string, Entry>()
  const entriesByKey = new Map<string, Entry>()
  const breakers = new Map<string, CircuitBreaker>()
  const background = new Set<Promise<unknown>>()
  let started = false
  let closing = false
  let storeDown = false

  for (const credential of deps.credentials) {
    const entry: Entry = {
      credential,
      adapter: providers.adapterFor(credential.provider),
      key: grantKey(credential),
      local: undefined,
      plannedAt: Number.POSITIVE_INFINITY,
      inflight: undefined,
      waiters: new Set(),
      consecutiveFailures: 0,
      failingUntil: 0,
      lastFailure: undefined,
      lastFailureAt: 0,
      fence: -1,
      lastRejectionRefreshAt: Number.NEGATIVE_INFINITY,
      permanent: undefined,
      secretVersion: undefined
    }
    entries.set(credential.id, entry)
    entriesByKey.set(entry.key, entry)
  }

  const pacer = options.pacing === false ? undefined : createRefreshPacer(options.pacing)
  const timers = createTimerHeap({ clock, onDue: id => { pacer?.release(id); proactive(id) } })

  /**
   * When a grant's proactive refresh is due: the moment stored with it (Grant.refreshAt, chosen by the
   * replica that minted it) when that lies in the allowed window, else its planned time.
   */
  function dueAt (entry: Entry, grant: Grant): number {
    const planned = plannedRefreshAt(grant, entry.credential.refresh, entry.key)
    const chosen = grant.refreshAt
    return chosen !== undefined && chosen <= planned && chosen >= earliestRefreshAt(grant) ? chosen : planned
  }

  /** Books a freshly minted grant's refresh with the pacer and records the moment in the grant, before it is stored. */
  function pace (entry: Entry, grant: Grant): void {
    if (pacer === undefined) return
    const plannedAt = plannedRefreshAt(grant, entry.credential.refresh, entry.key)
    grant.refreshAt = pacer.book(entry.credential.id, { now: clock.now(), earliestAt: earliestRefreshAt(grant), plannedAt })
  }

  /** Schedules the proactive refresh of the held grant at its due moment, and records it with the pacer. */
  function scheduleRefresh (entry: Entry): void {
    if (entry.local !== undefined) pacer?.bookAt(entry.credential.id, entry.plannedAt)
    timers.schedule(entry.credential.id, entry.plannedAt)
  }

  /** Schedules a refresh for another reason (a retry, a start); it takes no paced slot. */
  function scheduleAt (entry: Entry, at: number): void {
    pacer?.release(entry.credential.id)
    timers.schedule(entry.credential.id, at)
  }

  const unsubscribeGrants = store.onGrant(key => {
    const entry = entriesByKey.get(key)
    if (entry === undefined) return
    for (const wake of entry.waiters) wake()
    track(readStore(entry).then(stored => { if (stored !== undefined) adopt(entry, stored.grant, stored.fence) }))
  })

  const unsubscribeRotation = secrets.onRotation((path, version) => {
    for (const entry of entries.values()) {
      if (entry.credential.secret !== path) continue
      observer.rotated?.(entry.credential.id)
      log.info({ credentialId: entry.credential.id, secretVersion: version }, 'secret rotated')
      entry.permanent = undefined
      entry.failingUntil = 0
      if (entry.adapter.kind === 'token') {
        track(refresh(entry, { reason: 'rotation', secretVersion: version }).catch(() => { /* recorded in refresh */ }))
      }
    }
  })

  function track (promise: Promise<unknown>): void {
    background.add(promise)
    void promise.catch(() => {}).finally(() => background.delete(promise))
  }

  function breakerFor (credential: CredentialConfig): CircuitBreaker {
    const endpoint = `${credential.provider}:${credential.environment}:${credential.base_url ?? credential.token_url ?? ''}`
    let breaker = breakers.get(endpoint)
    if (breaker === undefined) {
      breaker = createCircuitBreaker({
        clock,
        failureThreshold: options.breakerFailureThreshold,
        cooldownMs: options.breakerCooldownMs,
        onStateChange: state => {
          log.warn({ provider: credential.provider, endpoint, state }, 'circuit breaker changed state')
          observer.breakerState?.(credential.provider, state, endpoint)
        }
      })
      breakers.set(endpoint, breaker)
    }
    return breaker
  }

  function leaseTtlMs (credential: CredentialConfig): number {
    // A refresh may take two provider calls (Klavi: refresh, then mint on 401) and a secret read.
    return options.leaseTtlMs ?? 2 * credential.timeout_ms + 10_000
  }

  function waitTimeoutMs (credential: CredentialConfig): number {
    return options.waitTimeoutMs ?? credential.timeout_ms + 5_000
  }

  function entryFor (credentialId: string): Entry {
    const entry = entries.get(credentialId)
    if (entry === undefined) throw new BrokerError('CB_CREDENTIAL_NOT_FOUND', 'no credential with this id')
    return entry
  }

  function tokenEntry (credentialId: string): Entry & { adapter: TokenAdapter } {
    const entry = entryFor(credentialId)
    if (entry.adapter.kind !== 'token') {
      throw new BrokerError('CB_UNSUPPORTED_OPERATION', `credential "${credentialId}" is a signing credential; it has no token (use /signatures)`)
    }
    return entry as Entry & { adapter: TokenAdapter }
  }

  async function readStore (entry: Entry): Promise<StoredGrant | undefined> {
    try {
      const stored = await store.get(entry.key)
      if (storeDown) { storeDown = false; log.info({}, 'grant store reachable again') }
      return stored ?? undefined
    } catch (err) {
      if (!isStoreError(err)) throw err
      if (!storeDown) { storeDown = true; log.warn({ err }, 'grant store unreachable; serving from the local cache') }
      return undefined
    }
  }

  /**
   * Takes a grant into the local cache if it is newer, and plans its proactive refresh. "Newer" is a
   * higher fence (written under a later lease, whatever the clocks of the replicas say) or a longer life
   * (a grant minted while the store was down, or fences that restarted with an empty Redis).
   */
  function adopt (entry: Entry, grant: Grant, fence?: number): void {
    const current = entry.local
    const newer = current === undefined || current.expiresAt <= clock.now() ||
      (fence !== undefined && fence > entry.fence) || grant.expiresAt > current.expiresAt
    if (!newer) return
    // A newer grant (often from another replica) proves the credential works again.
    if (current !== undefined && current.accessToken !== grant.accessToken && entry.inflight === undefined) clearFailures(entry)
    entry.local = grant
    entry.fence = fence ?? entry.fence
    if (grant.secretVersion !== undefined) entry.secretVersion = grant.secretVersion
    entry.plannedAt = dueAt(entry, grant)
    if (!closing && entry.consecutiveFailures === 0) scheduleRefresh(entry)
  }

  function needsRefresh (entry: Entry, stored: Grant | undefined, intent: RefreshIntent): boolean {
    if (stored === undefined) return true
    const now = clock.now()
    if (stored.expiresAt <= now) return true
    switch (intent.reason) {
      case 'on_demand': {
        if (stored.expiresAt >= (intent.neededUntil ?? now)) return false
        // A grant this young is as good as a new one: minting again cannot give more life.
        const lifetime = stored.expiresAt - stored.obtainedAt
        return now - stored.obtainedAt >= Math.min(minGrantAgeCapMs, minGrantAgeFraction * lifetime)
      }
      case 'proactive': return now >= dueAt(entry, stored)
      case 'rejected': return intent.rejectedToken !== undefined && sameToken(stored.accessToken, intent.rejectedToken)
      case 'rotation': return (stored.secretVersion ?? 0) < (intent.secretVersion ?? 0)
      case 'forced': return stored.obtainedAt < (intent.requestedAt ?? now)
    }
  }

  function providerContext (entry: Entry, signal: AbortSignal = shutdown.signal): ProviderContext {
    return { credential: entry.credential, now: clock.now, log: log.child({ credentialId: entry.credential.id }), signal }
  }

  async function readSecret (entry: Entry, fresh: boolean): Promise<SecretValue> {
    try {
      return fresh ? await secrets.reread(entry.credential.secret) : await secrets.get(entry.credential.secret)
    } catch (err) {
      if (err instanceof SecretError) {
        throw new BrokerError('CB_SECRET_UNAVAILABLE', `the secret of credential "${entry.credential.id}" could not be read (${err.reason})`, { cause: err, retryAfterSeconds: err.reason === 'unavailable' ? 5 : undefined })
      }
      throw err
    }
  }

  async function callProvider (entry: Entry & { adapter: TokenAdapter }, intent: RefreshIntent, secret: SecretData, previous: Grant | undefined, signal: AbortSignal): Promise<Grant> {
    const ctx = providerContext(entry, signal)
    // The refresh path presents the current token: useless when the provider has just rejected it.
    const refreshable = previous !== undefined && previous.expiresAt > clock.now() + 1000 && intent.reason !== 'rejected'
    if (entry.adapter.refresh !== undefined && refreshable) {
      try {
        return await entry.adapter.refresh(previous, secret, ctx)
      } catch (err) {
        // A refresh endpoint does not use the client secret, so its refusals say nothing about it: only
        // a transient failure is worth retrying as is; anything else falls back to minting.
        if (!(err instanceof ProviderError) || err.kind === 'transient') throw err
        ctx.log.info({ status: err.status }, 'refresh refused; minting instead')
      }
    }
    return await entry.adapter.mint(secret, ctx)
  }

  /** One provider call under the lease (or without one when the store is down), with the secret re-read once on a permanent error. */
  async function mint (entry: Entry & { adapter: TokenAdapter }, intent: RefreshIntent, lease: Lease | undefined, previous: Grant | undefined): Promise<{ grant: Grant, fence?: number }> {
    const breaker = breakerFor(entry.credential)
    const gate = breaker.check()
    if (!gate.allowed) {
      throw new ProviderError('transient', 'circuit open: the provider failed repeatedly; waiting before the next probe', { retryAfterMs: gate.retryAfterMs })
    }
    const started = performance.now()
    const seconds = (): number => (performance.now() - started) / 1000
    let secret: SecretValue
    try {
      secret = await readSecret(entry, false)
    } catch (err) {
      breaker.abandon() // not the provider's fault: give a half-open probe slot back
      throw err
    }
    // The work under a lease ends before the lease does: a refresher that outlived its lease would only
    // be fenced out, after another replica had already called the provider again. (A controller per
    // mint whose timer and listener go when the mint ends: AbortSignal.timeout/any would keep one timer
    // and one listener per mint alive for the whole lease, 10,000 of them at a cold start.)
    const bound = new AbortController()
    const onShutdown = (): void => { bound.abort(shutdown.signal.reason) }
    // A listener added to an already aborted signal never fires: a mint that starts during shutdown
    // is aborted at once (and its lease released) rather than outliving the process.
    if (shutdown.signal.aborted) onShutdown()
    else shutdown.signal.addEventListener('abort', onShutdown, { once: true })
    const leaseTimer = setTimeout(() => { bound.abort(new DOMException('the refresh outlived its lease', 'TimeoutError')) }, Math.max(1000, leaseTtlMs(entry.credential) - 1000))
    leaseTimer.unref()
    const signal = bound.signal
    let grant: Grant
    try {
      try {
        grant = await callProvider(entry, intent, secret.data, previous, signal)
      } catch (err) {
        if (!(err instanceof ProviderError) || err.kind !== 'permanent') throw err
        // Wrong credentials: the secret may have been rotated in Vault since we read it. Re-read once.
        const fresh = await readSecret(entry, true).catch(() => secret)
        if (fresh.version === secret.version) throw err
        log.info({ credentialId: entry.credential.id, secretVersion: fresh.version }, 'retrying with a newer secret version')
        secret = fresh
        grant = await entry.adapter.mint(secret.data, providerContext(entry, signal))
      }
      // A grant that is (nearly) expired on arrival, from a clock-skewed provider or a very slow answer,
      // would be refreshed again at once, and again: treat it as the bad answer it is, with backoff.
      if (grant.expiresAt <= clock.now() + servingMarginMs) {
        throw new ProviderError('bad-response', `${entry.credential.provider}: the provider answered a token that expires at once`)
      }
    } catch (err) {
      if (err instanceof ProviderError && err.kind !== 'permanent') breaker.failure()
      else if (err instanceof ProviderError) breaker.success() // it answered: the provider is up
      else breaker.abandon()
      observer.refreshed?.(entry.credential.provider, entry.credential.id, err instanceof ProviderError && err.kind === 'permanent' ? 'permanent_error' : 'transient_error', intent.reason, seconds())
      throw err
    } finally {
      clearTimeout(leaseTimer)
      shutdown.signal.removeEventListener('abort', onShutdown)
    }
    breaker.success()
    grant.secretVersion = secret.version
    // The refresh moment is chosen once, here, and stored with the grant: every replica schedules it.
    pace(entry, grant)
    // A provider that answers a refresh without a refresh token keeps the old one valid: never replace it with nothing.
    if (grant.refreshToken === undefined && previous?.refreshToken !== undefined) grant.refreshToken = previous.refreshToken
    // The fence of our write, when the store took it; undefined when there was no lease or the store was
    // down (the grant is kept locally and the store gets the next one).
    let fence: number | undefined
    if (lease !== undefined) {
      let written: boolean | undefined
      try {
        written = await store.putGrant(lease, grant)
      } catch (err) {
        if (!isStoreError(err)) throw err
        storeDown = true
      }
      if (written === false) {
        // A newer lease holder wrote (or is writing) a grant; ours must not overwrite it. Serve whichever
        // lives longer: ours is a valid token too, only not the cluster's shared one.
        observer.refreshed?.(entry.credential.provider, entry.credential.id, 'fenced_out', intent.reason, seconds())
        log.warn({ credentialId: entry.credential.id }, 'grant write fenced out by a newer lease')
        const stored = await readStore(entry)
        if (stored !== undefined && stored.grant.expiresAt >= grant.expiresAt) return { grant: stored.grant, fence: stored.fence }
        return { grant }
      }
      if (written === true) fence = lease.fence
    }
    observer.refreshed?.(entry.credential.provider, entry.credential.id, 'success', intent.reason, seconds())
    log.info({ credentialId: entry.credential.id, reason: intent.reason, expiresAt: new Date(grant.expiresAt).toISOString(), fingerprint: grantFingerprint(grant) }, 'grant refreshed')
    return { grant, fence }
  }

  /** Resolves when a grant notice for this entry arrives, or after `ms`. Registered before the store is re-read, so no notice is missed. */
  function noticeOrTimeout (entry: Entry, ms: number): { promise: Promise<void>, cancel: () => void } {
    let wake: () => void = () => {}
    let timer: NodeJS.Timeout | undefined
    const promise = new Promise<void>(resolve => {
      wake = () => { entry.waiters.delete(wake); if (timer !== undefined) clearTimeout(timer); resolve() }
      entry.waiters.add(wake)
      timer = setTimeout(wake, Math.max(1, ms))
      timer.unref()
    })
    return { promise, cancel: wake }
  }

  /**
   * The cluster-wide single flight. The lease holder re-checks the store (another replica may have just
   * written) and mints only if still needed; everyone else waits for the holder's grant notice, or for
   * its lease to lapse (a holder that died), then looks again. Nobody polls.
   */
  async function runRefresh (entry: Entry & { adapter: TokenAdapter }, intent: RefreshIntent, deadline: number): Promise<Grant> {
    for (let attempt = 0; ; attempt++) {
      if (closing) throw new BrokerError('CB_NOT_READY', 'the broker is shutting down', { retryAfterSeconds: 1 })
      // After a wait, never start a provider call past the caller's deadline.
      if (attempt > 0 && Date.now() >= deadline) throw refreshTimeout(entry)
      let lease: Lease | null
      try {
        lease = await store.acquireLease(entry.key, leaseTtlMs(entry.credential))
      } catch (err) {
        if (!isStoreError(err)) throw err
        // Store down: no cluster-wide lease is possible. Mint on this replica alone (its own single flight
        // still holds), keep the grant locally, and let the store catch up when it returns.
        storeDown = true
        if (!needsRefresh(entry, entry.local, intent)) return entry.local as Grant
        const minted = await mintOrForget(entry, intent, undefined, entry.local)
        adopt(entry, minted.grant)
        return minted.grant
      }
      if (lease !== null) {
        // A write announces itself; anything else (nothing needed, a failure) is announced on release.
        let wrote = false
        try {
          // Judge the newest grant known: the stored one if it is newer (adopted), else the one held here.
          // The timer that started a proactive refresh was set from the held grant; judging an older
          // stored one instead could find nothing due and re-arm the same timer in a loop.
          const stored = await readStore(entry)
          if (stored !== undefined) adopt(entry, stored.grant, stored.fence)
          const current = entry.local ?? stored?.grant
          if (!needsRefresh(entry, current, intent)) return current as Grant
          const minted = await mintOrForget(entry, intent, lease, current)
          wrote = minted.fence === lease.fence
          adopt(entry, minted.grant, minted.fence)
          return minted.grant
        } finally {
          await store.releaseLease(lease, { announce: !wrote }).catch(err => { log.warn({ err, credentialId: entry.credential.id }, 'could not release lease') })
        }
      }
      observer.leaseContention?.(entry.credential.id)
      const remaining = deadline - Date.now()
      if (remaining <= 0) throw refreshTimeout(entry)
      // Wait for the holder's notice, but no longer than its lease has left: a holder that died is
      // replaced as soon as its lease lapses, not a whole lease period later.
      const leaseLeft = await store.leaseRemainingMs(entry.key).catch(() => leaseTtlMs(entry.credential))
      const notice = noticeOrTimeout(entry, Math.min(remaining, leaseLeft + 25))
      const stored = await readStore(entry)
      if (stored !== undefined && !needsRefresh(entry, stored.grant, intent)) {
        notice.cancel()
        adopt(entry, stored.grant, stored.fence)
        return stored.grant
      }
      await notice.promise
    }
  }

  /**
   * mint(), and when a caller's rejection report could not be answered with a new token, forget the
   * rejected one: it must not be served again (providers.md: Kivra 40015 → drop the cached token).
   */
  async function mintOrForget (entry: Entry & { adapter: TokenAdapter }, intent: RefreshIntent, lease: Lease | undefined, previous: Grant | undefined): Promise<{ grant: Grant, fence?: number }> {
    try {
      return await mint(entry, intent, lease, previous)
    } catch (err) {
      if (intent.reason === 'rejected' && intent.rejectedToken !== undefined) {
        if (lease !== undefined) await store.deleteGrant(lease).catch(() => false)
        if (entry.local !== undefined && sameToken(entry.local.accessToken, intent.rejectedToken)) entry.local = undefined
      }
      throw err
    }
  }

  function refreshTimeout (entry: Entry): BrokerError {
    return new BrokerError('CB_REFRESH_TIMEOUT', `a refresh of credential "${entry.credential.id}" is running and did not finish in time`, { retryAfterSeconds: 1 })
  }

  /** Settles like `promise`, or rejects with CB_REFRESH_TIMEOUT after `ms`. */
  async function withDeadline<T> (entry: Entry, promise: Promise<T>, ms: number): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(refreshTimeout(entry)) }, ms)
      timer.unref()
    })
    try {
      return await Promise.race([promise, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  function clearFailures (entry: Entry): void {
    entry.consecutiveFailures = 0
    entry.failingUntil = 0
    entry.lastFailure = undefined
    entry.permanent = undefined
  }

  /** What status shows of the last failure: its kind and the provider's code, never a message or body. */
  function lastErrorOf (entry: Entry): CredentialStatus['lastError'] {
    const err = entry.lastFailure
    if (err === undefined) return undefined
    const providerError = err instanceof ProviderError ? err : undefined
    return { kind: providerError?.kind ?? (err instanceof BrokerError ? err.code : 'internal'), providerCode: providerError?.providerCode, at: entry.lastFailureAt }
  }

  function recordFailure (entry: Entry, err: unknown): void {
    entry.consecutiveFailures += 1
    entry.lastFailure = err
    entry.lastFailureAt = clock.now()
    const providerError = err instanceof ProviderError ? err : undefined
    if (providerError?.kind === 'permanent') entry.permanent = providerError
    entry.failingUntil = clock.now() + backoffDelayMs(entry.consecutiveFailures, providerError?.retryAfterMs, backoff, random)
  }

  /** The per-replica single flight: concurrent callers share one refresh. */
  async function refresh (entry: Entry, intent: RefreshIntent): Promise<Grant> {
    const tokenEntryRef = entry as Entry & { adapter: TokenAdapter }
    // A caller waits up to waitTimeoutMs; a background refresh waits for another replica's lease for one
    // lease period, then gives up and is rescheduled.
    const callerWaiting = isCallerWaiting(intent)
    const deadline = Date.now() + (callerWaiting ? waitTimeoutMs(entry.credential) : leaseTtlMs(entry.credential))
    // Join a refresh already running here. It may have been started for another reason and decided that
    // nothing was needed; then run our own, unless someone else joined first and already started one.
    for (let inflight = entry.inflight; inflight !== undefined; inflight = entry.inflight) {
      // A caller joining a proactive or rotation refresh keeps its own deadline (withDeadline throws when it passes).
      const settled = inflight.then(grant => ({ grant }), (err: unknown) => ({ err }))
      const outcome = callerWaiting ? await withDeadline(entry, settled, deadline - Date.now()) : await settled
      if ('err' in outcome) {
        // A background refresh that gave up waiting for another replica's lease is no answer for a caller
        // with time left: it goes on waiting on its own rather than getting a 503.
        const gaveUp = outcome.err instanceof BrokerError && outcome.err.code === 'CB_REFRESH_TIMEOUT'
        if (!(callerWaiting && gaveUp)) throw outcome.err
      } else if (!needsRefresh(entry, outcome.grant, intent)) {
        return outcome.grant
      }
      if (entry.inflight === inflight) break
    }
    // A caller that waited on a joined refresh may have no time left for one of its own.
    if (callerWaiting && Date.now() >= deadline) throw refreshTimeout(entry)
    const run: Promise<Grant> = runRefresh(tokenEntryRef, intent, deadline).then(grant => {
      clearFailures(entry)
      if (!closing) scheduleRefresh(entry)
      return grant
    }, (err: unknown) => {
      if (!(err instanceof BrokerError && (err.code === 'CB_REFRESH_TIMEOUT' || err.code === 'CB_NOT_READY'))) {
        recordFailure(entry, err)
        log.warn({ err, credentialId: entry.credential.id, reason: intent.reason, attempt: entry.consecutiveFailures }, 'refresh failed')
      }
      throw err
    }).finally(() => {
      // Cleared when the run settles, not when a caller stops waiting: a second run on this replica
      // must not start while the first still holds the lease.
      if (entry.inflight === run) entry.inflight = undefined
    })
    entry.inflight = run
    // A caller waits no longer than waitTimeoutMs in all, for joined refreshes and its own; its own goes on
    // without it (and ends within the lease) when the caller gives up.
    return callerWaiting ? await withDeadline(entry, run, deadline - Date.now()) : await run
  }

  function proactive (credentialId: string): void {
    const entry = entries.get(credentialId)
    if (entry === undefined || closing || entry.adapter.kind !== 'token') return
    track(limit(async () => {
      if (closing) return
      try {
        await refresh(entry, { reason: 'proactive' })
      } catch (err) {
        if (closing) return
        // Permanent errors wait for a rotation (or an operator) rather than hammering the provider;
        // still probe now and then, in case the provider side was fixed.
        const retryIn = entry.permanent !== undefined
          ? 10 * 60_000
          : backoffDelayMs(Math.max(1, entry.consecutiveFailures), err instanceof ProviderError ? err.retryAfterMs : undefined, backoff, random)
        scheduleAt(entry, clock.now() + retryIn)
      }
    }))
  }

  function toBrokerError (entry: Entry, err: unknown): unknown {
    if (err instanceof BrokerError) return err
    if (err instanceof ProviderError) {
      if (err.kind === 'permanent') {
        return new BrokerError('CB_PROVIDER_REJECTED_CREDENTIALS', `the provider rejected the client credentials of "${entry.credential.id}"${err.providerCode === undefined ? '' : ` (provider code ${err.providerCode})`}; the secret needs rotating`, { cause: err, extensions: { provider_code: err.providerCode } })
      }
      const retryAfterSeconds = Math.max(1, Math.ceil(Math.max(err.retryAfterMs ?? 0, entry.failingUntil - clock.now()) / 1000))
      return new BrokerError('CB_PROVIDER_UNAVAILABLE', `the provider of "${entry.credential.id}" is unavailable and no grant with enough life is held`, { cause: err, retryAfterSeconds })
    }
    return err
  }

  function served (credentialId: string, source: TokenSource | 'error', started: number): void {
    observer.tokenServed?.(credentialId, source, (performance.now() - started) / 1000)
  }

  async function slowPath (entry: Entry & { adapter: TokenAdapter }, minTtlSeconds: number, started: number): Promise<IssuedToken> {
    const neededUntil = (): number => clock.now() + minTtlSeconds * 1000 + servingMarginMs
    const stored = await readStore(entry)
    if (stored !== undefined && stored.grant.expiresAt >= neededUntil()) {
      adopt(entry, stored.grant, stored.fence)
      served(entry.credential.id, 'store', started)
      return { grant: stored.grant, source: 'store' }
    }
    // Within a failure backoff, answer at once rather than letting callers drive the provider harder.
    if (entry.permanent !== undefined) throw toBrokerError(entry, entry.permanent)
    if (clock.now() < entry.failingUntil && entry.inflight === undefined) {
      const retryAfterSeconds = Math.max(1, Math.ceil((entry.failingUntil - clock.now()) / 1000))
      const last = toBrokerError(entry, entry.lastFailure)
      if (last instanceof BrokerError && last.code !== 'CB_PROVIDER_UNAVAILABLE') throw new BrokerError(last.code, last.message, { retryAfterSeconds, extensions: last.extensions })
      throw new BrokerError('CB_PROVIDER_UNAVAILABLE', `the provider of "${entry.credential.id}" is failing and no grant with enough life is held`, { retryAfterSeconds })
    }
    // A min_ttl close to the whole lifetime could only be met by minting on almost every request.
    const known = entry.local ?? stored?.grant
    if (known !== undefined && minTtlSeconds * 1000 + servingMarginMs > 0.9 * (known.expiresAt - known.obtainedAt)) {
      const lifetime = Math.floor((known.expiresAt - known.obtainedAt) / 1000)
      throw new BrokerError('CB_MIN_TTL_UNSATISFIABLE', `min_ttl ${minTtlSeconds} s is too close to the ${lifetime} s lifetime of "${entry.credential.id}"'s grants`, { extensions: { lifetime_seconds: lifetime } })
    }
    let grant: Grant
    try {
      grant = await refresh(entry, { reason: 'on_demand', neededUntil: neededUntil() })
    } catch (err) {
      throw toBrokerError(entry, err)
    }
    if (grant.expiresAt < neededUntil()) {
      const lifetime = Math.floor((grant.expiresAt - grant.obtainedAt) / 1000)
      throw new BrokerError('CB_MIN_TTL_UNSATISFIABLE', `min_ttl ${minTtlSeconds} s cannot be met: the newest grant of "${entry.credential.id}" lives ${lifetime} s in all`, { extensions: { lifetime_seconds: lifetime } })
    }
    served(entry.credential.id, 'refreshed', started)
    return { grant, source: 'refreshed' }
  }

  return {
    async getToken (credentialId, minTtlSeconds) {
      const started = performance.now()
      const entry = tokenEntry(credentialId)
      const local = entry.local
      const now = clock.now()
      // Hot path: no I/O. A grant that satisfies the caller's min_ttl is served even if a refresh is due
      // or failing (the advisory window / stale-if-error); it is never served once it cannot.
      if (local !== undefined && local.expiresAt >= now + minTtlSeconds * 1000 + servingMarginMs) {
        const source: TokenSource = entry.consecutiveFailures > 0 && now >= entry.plannedAt ? 'stale' : 'local'
        served(credentialId, source, started)
        return { grant: local, source }
      }
      try {
        return await slowPath(entry, minTtlSeconds, started)
      } catch (err) {
        served(credentialId, 'error', started)
        throw err
      }
    },

    async reportRejected (credentialId, rejectedToken) {
      const started = performance.now()
      const entry = tokenEntry(credentialId)
      const current = entry.local ?? (await readStore(entry))?.grant
      // Only the token we hand out now can force a refresh; a report about an older one is already handled.
      if (current !== undefined && !sameToken(current.accessToken, rejectedToken) && current.expiresAt > clock.now()) {
        served(credentialId, 'local', started)
        return { grant: current, source: 'local' }
      }
      // A caller that reports every token it gets (its 403 is about something else: scope, tenant)
      // must not drive the provider: at most one rejection-driven refresh per interval per replica.
      // (Reports arriving while that refresh runs join it, below.)
      const lifetime = current === undefined ? 0 : current.expiresAt - current.obtainedAt
      const interval = options.rejectionRefreshIntervalMs ?? Math.min(rejectionRefreshIntervalCapMs, minGrantAgeFraction * lifetime)
      const sinceLast = clock.now() - entry.lastRejectionRefreshAt
      if (current !== undefined && entry.inflight === undefined && sinceLast < interval) {
        served(credentialId, 'error', started)
        throw new BrokerError('CB_RATE_LIMITED', `credential "${credentialId}" was refreshed on a rejection report moments ago; one such refresh per ${Math.ceil(interval / 1000)} s`, { retryAfterSeconds: Math.max(1, Math.ceil((interval - sinceLast) / 1000)) })
      }
      if (entry.permanent !== undefined) throw toBrokerError(entry, entry.permanent)
      entry.lastRejectionRefreshAt = clock.now()
      try {
        const grant = await refresh(entry, { reason: 'rejected', rejectedToken })
        served(credentialId, 'refreshed', started)
        return { grant, source: 'refreshed' }
      } catch (err) {
        served(credentialId, 'error', started)
        throw toBrokerError(entry, err)
      }
    },

    async forceRefresh (credentialId) {
      const entry = tokenEntry(credentialId)
      entry.permanent = undefined
      entry.failingUntil = 0
      try {
        return { grant: await refresh(entry, { reason: 'forced', requestedAt: clock.now() }), source: 'refreshed' }
      } catch (err) {
        throw toBrokerError(entry, err)
      }
    },

    async sign (credentialId, request) {
      const entry = entryFor(credentialId)
      if (entry.adapter.kind !== 'signing') {
        throw new BrokerError('CB_UNSUPPORTED_OPERATION', `credential "${credentialId}" is a token credential; it does not sign requests (use /token)`)
      }
      const secret = await readSecret(entry, false)
      entry.secretVersion = secret.version
      try {
        return (entry.adapter as SigningAdapter).sign(request, secret.data, providerContext(entry))
      } catch (err) {
        throw toBrokerError(entry, err)
      }
    },

    async verifyWebhook (credentialId, input) {
      const entry = entryFor(credentialId)
      const verifier = providers.webhookVerifierFor(entry.credential.provider)
      if (verifier === undefined) {
        throw new BrokerError('CB_UNSUPPORTED_OPERATION', `provider "${entry.credential.provider}" has no webhook signature scheme`)
      }
      const secret = await readSecret(entry, false)
      return verifier.verify(input, secret.data, { now: clock.now, toleranceSeconds: options.webhookToleranceSeconds ?? 300 })
    },

    statuses () {
      const now = clock.now()
      return [...entries.values()].map((entry): CredentialStatus => {
        const grant = entry.local
        let state: CredentialStatus['state']
        if (entry.adapter.kind === 'signing') state = 'static'
        else if (entry.inflight !== undefined) state = 'refreshing'
        else if (grant === undefined || grant.expiresAt <= now) state = entry.consecutiveFailures > 0 ? 'failing' : 'unknown'
        else if (entry.consecutiveFailures > 0) state = now >= entry.plannedAt ? 'stale' : 'failing'
        else state = 'fresh'
        return {
          id: entry.credential.id,
          provider: entry.credential.provider,
          environment: entry.credential.environment,
          state,
          expiresAt: grant?.expiresAt,
          obtainedAt: grant?.obtainedAt,
          nextRefreshAt: timers.scheduledAt(entry.credential.id),
          secretVersion: entry.secretVersion,
          consecutiveFailures: entry.consecutiveFailures,
          lastError: lastErrorOf(entry)
        }
      })
    },

    async health (): Promise<BrokerHealth> {
      const [storeHealth, secretHealth] = [await store.health(), secrets.health()]
      storeDown = storeHealth.state === 'down'
      const storePart = { kind: store.kind, state: storeHealth.state, detail: storeHealth.state === 'down' ? storeHealth.detail : undefined }
      const secretsPart = { kind: deps.secretsKind, state: secretHealth.state, detail: secretHealth.detail, authenticated: secretHealth.authenticated }
      let state: BrokerHealth['state'] = 'ready'
      if (!started || closing) state = 'not_ready'
      else if (storeHealth.state === 'down' || secretHealth.state !== 'ok') state = 'degraded'
      return { state, store: storePart, secrets: secretsPart }
    },

    async start () {
      // Hold every client secret from the start: if Vault is sealed later and the lease falls to this
      // replica, it can still refresh with the secret it holds. A secret that cannot be read now is
      // read again on first use.
      const paths = [...new Set([...entries.values()].map(entry => entry.credential.secret))]
      await Promise.all(paths.map(async path => {
        await secrets.get(path).catch((err: unknown) => { log.warn({ err, path }, 'secret not readable at start; will retry on first use') })
      }))
      // Load what the store already holds, so a restarted replica serves at once and does not re-mint;
      // a grant minted with an older secret version (a rotation while no replica ran) is replaced.
      await Promise.all([...entries.values()].map(async entry => {
        if (entry.adapter.kind !== 'token') return
        const stored = await readStore(entry)
        if (stored === undefined || stored.grant.expiresAt <= clock.now()) {
          scheduleAt(entry, clock.now())
          return
        }
        adopt(entry, stored.grant, stored.fence)
        const held = await secrets.get(entry.credential.secret).catch(() => undefined)
        if (held !== undefined && stored.grant.secretVersion !== undefined && stored.grant.secretVersion < held.version) {
          track(refresh(entry, { reason: 'rotation', secretVersion: held.version }).catch(() => { /* recorded in refresh */ }))
        }
      }))
      started = true
    },

    drain (graceMs) {
      // Shutdown has begun: no new proactive refreshes; requests still in flight may finish their
      // refresh for a while, after which provider calls are aborted (and their leases released).
      timers.close()
      setTimeout(() => { shutdown.abort() }, graceMs).unref()
    },

    async close () {
      closing = true
      timers.close()
      unsubscribeGrants()
      unsubscribeRotation()
      for (const entry of entries.values()) for (const wake of entry.waiters) wake()
      // In-flight provider calls are aborted; their `finally` releases the leases they hold.
      shutdown.abort()
      await Promise.race([
        Promise.allSettled([...background, ...[...entries.values()].map(async entry => await entry.inflight)]),
        new Promise(resolve => setTimeout(resolve, 5_000).unref())
      ])
    }
  }
}
