/** The broker's public surface: what it needs (deps), what it reports (observer), what it answers. */
import type { Logger } from 'pino'
import type { CredentialConfig } from '../config.js'
import type { ProviderKind, ProviderRegistry } from '../providers/catalog.js'
import type { Grant, SessionUser, SigningRequest, WebhookInput, WebhookResult } from '../providers/types.js'
import type { PreviousVersion, SecretSourceHealth, SecretValue } from '../secrets/types.js'
import type { GrantStore } from '../store/types.js'
import type { BackoffPolicy, Clock } from '../time.js'
import type { CircuitState } from './circuit-breaker.js'
import type { PacerOptions } from './pacer.js'

/** Where a handed-out token came from, for metrics and audit. */
export type TokenSource = 'local' | 'store' | 'refreshed' | 'stale'

export interface IssuedToken {
  grant: Grant
  source: TokenSource
  /** Whole seconds the token has left at the moment it is issued, on the broker's clock (never more than it really has). */
  expiresIn: number
}

export const credentialStates = ['unknown', 'fresh', 'refreshing', 'stale', 'failing', 'static'] as const
export type CredentialState = typeof credentialStates[number]

/** What an operator (or a permitted caller) may see of a credential. Never a secret or a token. */
export interface CredentialStatus {
  id: string
  provider: ProviderKind
  environment: 'sandbox' | 'production'
  state: CredentialState
  expiresAt?: number | undefined
  obtainedAt?: number | undefined
  nextRefreshAt?: number | undefined
  /** When the held grant's proactive refresh is due by its schedule (a retry after a failure may be set for another moment). */
  refreshDueAt?: number | undefined
  secretVersion?: number | undefined
  /** The held grant was minted with an older secret version than the current one, which the provider rejected (secret rollover). */
  secretRolledBack?: boolean | undefined
  consecutiveFailures: number
  /** Scoped grants and Kigo user sessions this replica holds for the credential now (token credentials). */
  scopedGrants?: number | undefined
  userSessionsCached?: number | undefined
  lastError?: { kind: string, providerCode?: string | undefined, at: number } | undefined
}

export interface BrokerHealth {
  state: 'ready' | 'degraded' | 'not_ready'
  /** Why it is not ready (readiness.ts); undefined when ready. */
  reason?: string | undefined
  store: { kind: 'redis' | 'memory', state: 'up' | 'down', detail?: string | undefined }
  secrets: { kind: 'vault' | 'file', state: 'ok' | 'degraded' | 'down', detail?: string | undefined, authenticated?: boolean | undefined }
}

export interface Broker {
  /**
   * A grant with at least `minTtlSeconds` left, from the local cache, the store, or one refresh. Without
   * `minTtlSeconds` the broker asks for the default of the credential's lifetime (see refresh-policy.ts).
   */
  getToken: (credentialId: string, minTtlSeconds?: number, options?: { scope?: string | undefined }) => Promise<IssuedToken>
  /**
   * getToken's answer when the default grant in memory serves it (a local-cache hit), without a promise or
   * any I/O; undefined for anything else (miss, too short, unknown or signing credential, min_ttl out of
   * bounds), which getToken then answers. Counted and timed like getToken when it answers. `admit`, when
   * given, is asked once the grant is known to serve: false answers undefined and changes nothing.
   */
  peekToken: (credentialId: string, minTtlSeconds?: number, admit?: () => boolean) => IssuedToken | undefined
  /** A Kigo user session for `user` with at least `minTtlSeconds` left, cached per (credential, external_user_id). */
  userSession: (credentialId: string, user: SessionUser, minTtlSeconds?: number) => Promise<IssuedToken>
  /** A caller reports that the provider rejected `rejectedToken`: refresh once (deduplicated) and answer the new grant. */
  reportRejected: (credentialId: string, rejectedToken: string) => Promise<IssuedToken>
  /** Operator-forced refresh. */
  forceRefresh: (credentialId: string) => Promise<IssuedToken>
  /** Signature headers for one request (SIR Giving). */
  sign: (credentialId: string, request: SigningRequest) => Promise<Record<string, string>>
  verifyWebhook: (credentialId: string, input: WebhookInput) => Promise<WebhookResult>
  statuses: () => CredentialStatus[]
  health: () => Promise<BrokerHealth>
  start: () => Promise<void>
  /** Shutdown has begun (before in-flight requests drain): stop scheduling, abort provider calls after `graceMs`. */
  drain: (graceMs: number) => void
  close: () => Promise<void>
}

/** What the broker needs of the secret layer (src/secrets/secret-manager.ts). */
export interface BrokerSecrets {
  get: (path: string) => Promise<SecretValue>
  /** The held secret without I/O; undefined when the path was never read (readiness). */
  peek: (path: string) => SecretValue | undefined
  reread: (path: string) => Promise<SecretValue>
  /** The version before `current` (Vault keeps versions; the file source has none). */
  previous: (path: string, current: number) => Promise<PreviousVersion | undefined>
  onRotation: (listener: (path: string, version: number) => void) => () => void
  health: () => SecretSourceHealth
  close: () => Promise<void>
}

/** What the broker needs of the provider registry (src/providers/catalog.ts). */
export type BrokerProviders = Pick<ProviderRegistry, 'adapterFor' | 'webhookVerifierFor'>

export type RefreshReason = 'proactive' | 'on_demand' | 'rejected' | 'rotation' | 'forced'
export type RefreshResult = 'success' | 'transient_error' | 'permanent_error' | 'fenced_out'

/** Hooks for metrics; every argument is a credential id, a provider kind or an endpoint name, never a secret. */
export interface BrokerObserver {
  tokenServed?: (credentialId: string, source: TokenSource | 'error', seconds: number) => void
  refreshed?: (provider: ProviderKind, credentialId: string, result: RefreshResult, reason: RefreshReason, seconds: number) => void
  leaseContention?: (credentialId: string) => void
  /** A provider endpoint's breaker changed state; `endpoint` names it (provider, environment, host override). */
  breakerState?: (provider: ProviderKind, state: CircuitState, endpoint: string) => void
  rotated?: (credentialId: string) => void
  /** A grant was minted with the previous secret version because the provider rejected the current one. */
  rolledBack?: (credentialId: string) => void
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
  clock?: Clock | undefined
  observer?: BrokerObserver | undefined
  options?: BrokerOptions | undefined
}
