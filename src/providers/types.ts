import type { Logger } from 'pino'
import type { CredentialConfig, ProviderKind } from '../config.js'

/** What a provider gave us. Never logged; stored encrypted. Times are epoch milliseconds. */
export interface Grant {
  accessToken: string
  tokenType: string
  expiresAt: number
  obtainedAt: number
  scope?: string | undefined
  refreshToken?: string | undefined
  /** Version of the client secret this grant was minted with; set by the broker, not by adapters. */
  secretVersion?: number | undefined
  /**
   * When the proactive refresh of this grant is due: its planned time, or earlier where the minting
   * replica's pacer found a quieter second. Set by the broker and stored with the grant, so every replica
   * schedules the same moment.
   */
  refreshAt?: number | undefined
}

/** The fields of one secret (a Vault KV v2 version or a SECRETS_FILE entry). */
export type SecretData = Readonly<Record<string, string>>

export interface ProviderContext {
  readonly credential: CredentialConfig
  /** Current time in epoch milliseconds (an injected clock in tests). */
  readonly now: () => number
  readonly log: Logger
  /** Aborts the call (shutdown); adapters also apply `credential.timeout_ms` themselves. */
  readonly signal?: AbortSignal | undefined
}

/** A provider whose credential is a bearer token that the broker mints, caches and refreshes. */
export interface TokenAdapter {
  readonly kind: 'token'
  readonly provider: ProviderKind
  /** Fields the secret must hold; checked before any network call. */
  readonly secretFields: readonly string[]
  /** Obtain a new grant from the client secret. */
  mint: (secret: SecretData, ctx: ProviderContext) => Promise<Grant>
  /**
   * Renew a grant without the client secret's mint path (Klavi's GET /refresh). Absent means "mint
   * again". An adapter falls back to mint itself when its refresh path says the grant is unusable.
   */
  refresh?: (grant: Grant, secret: SecretData, ctx: ProviderContext) => Promise<Grant>
}

/** The parts of one outgoing request that a signature covers. */
export interface SigningRequest {
  method: string
  /** Path with query string, exactly as sent. */
  path: string
  /** Lowercase hex sha256 of the raw body (of the empty string when there is none). */
  bodySha256: string
}

/** A provider with static keys whose requests are signed per request (SIR Giving). */
export interface SigningAdapter {
  readonly kind: 'signing'
  readonly provider: ProviderKind
  readonly secretFields: readonly string[]
  /** Headers to add to the request; computed fresh on every call (every retry needs a new timestamp). */
  sign: (request: SigningRequest, secret: SecretData, ctx: ProviderContext) => Record<string, string>
}

export type ProviderAdapter = TokenAdapter | SigningAdapter

export interface WebhookInput {
  /** Header names lowercased. */
  headers: Readonly<Record<string, string | readonly string[] | undefined>>
  rawBody: Buffer
}

export type WebhookResult =
  | { valid: true }
  | { valid: false, reason: 'missing_signature' | 'missing_timestamp' | 'stale_timestamp' | 'bad_signature' | 'no_webhook_secret' }

/** Verifies a provider's webhook signature with the secret the broker holds. */
export interface WebhookVerifier {
  readonly provider: ProviderKind
  verify: (input: WebhookInput, secret: SecretData, ctx: { now: () => number, toleranceSeconds: number }) => WebhookResult
}
