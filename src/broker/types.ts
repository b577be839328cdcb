import type { Grant, SigningRequest, WebhookInput, WebhookResult } from '../providers/types.js'
import type { ProviderKind } from '../providers/catalog.js'

/** Where a handed-out token came from, for metrics and audit. */
export type TokenSource = 'local' | 'store' | 'refreshed' | 'stale'

export interface IssuedToken {
  grant: Grant
  source: TokenSource
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
  secretVersion?: number | undefined
  consecutiveFailures: number
  lastError?: { kind: string, providerCode?: string | undefined, at: number } | undefined
}

export interface BrokerHealth {
  state: 'ready' | 'degraded' | 'not_ready'
  store: { kind: 'redis' | 'memory', state: 'up' | 'down', detail?: string | undefined }
  secrets: { kind: 'vault' | 'file', state: 'ok' | 'degraded' | 'down', detail?: string | undefined, authenticated?: boolean | undefined }
}

export interface Broker {
  /** A grant with at least `minTtlSeconds` left, from the local cache, the store, or one refresh. */
  getToken: (credentialId: string, minTtlSeconds: number) => Promise<IssuedToken>
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
