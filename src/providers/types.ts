import type { Logger } from 'pino'
import type { CredentialConfig } from '../config.js'
import type { ProviderKind } from './catalog.js'

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
  /** Set when the provider rejected this version of the secret and the grant was minted with the one before (secret rollover). */
  secretRolledBackFrom?: number | undefined
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

/** What a Kigo user session is made for (docs/providers.md § Kigo, user sessions). `user_email` never leaves memory. */
export interface SessionUser {
  readonly external_user_id: string
  readonly user_email: string
  readonly external_program_id?: string | undefined
  readonly brand_identifier?: string | undefined
}

/** A provider's user-level sessions, made with the credential's own (partner) token. */
export interface UserSessions {
  /** A new session for `user`, authorised by `partnerToken`. A 401 means the partner token was refused (ProviderError status 401). */
  create: (partnerToken: string, user: SessionUser, ctx: ProviderContext) => Promise<Grant>
  /** A renewed session from the grant's refresh token. */
  refresh: (grant: Grant, ctx: ProviderContext) => Promise<Grant>
}

/** The two environments every provider documents; a credential picks one. */
export type Environment = 'sandbox' | 'production'

interface ProviderDescriptorBase {
  /** The hosts the provider documents, per environment; undefined when each credential names its own URL (generic OAuth2's token_url). */
  readonly hosts: Readonly<Record<Environment, string>> | undefined
  /**
   * The token lifetime assumed when an answer states none and the credential configures no
   * `lifetime_seconds`: the provider's documented lifetime (docs/providers.md), or ours for generic OAuth2.
   * Undefined for signing providers, which have no tokens.
   */
  readonly defaultLifetimeSeconds: number | undefined
  /** Fields the secret must hold (checked before any network call). */
  readonly secretFields: readonly string[]
  /** Fields the secret may hold for optional features (webhook keys, legacy signing). */
  readonly optionalSecretFields: readonly string[]
  /** Whether a token may be minted for a scope (a narrower scope is a different token). */
  readonly acceptsScope: boolean
  /** Partner credentials are backend-only whatever the file says; a generic OAuth2 credential may opt out. */
  readonly alwaysBackendOnly: boolean
  /** Verifies the provider's signed webhooks; undefined when it sends none we know of. */
  readonly webhookVerifier: WebhookVerifier | undefined
  /**
   * Provider error codes that, in an answer of the provider's API (the body's `code`, string or number, or
   * the `x-error-code` header), mean "this token is not valid" whatever the HTTP status (Kivra 40015, a 400).
   * A 401 always means so; this lists the other spellings. The proxy refreshes once and retries on either.
   */
  readonly invalidTokenCodes?: readonly string[] | undefined
  /** User-level sessions made with the credential's token (Kigo); undefined when the provider has none. */
  readonly userSessions?: (() => UserSessions) | undefined
}

/** A provider whose credential is a bearer token the broker mints, caches and refreshes. */
export interface TokenProviderDescriptor extends ProviderDescriptorBase {
  readonly mechanism: 'token'
  readonly createAdapter: () => TokenAdapter
}

/** A provider with static keys whose requests are signed one by one. */
export interface SigningProviderDescriptor extends ProviderDescriptorBase {
  readonly mechanism: 'signing'
  readonly createAdapter: () => SigningAdapter
}

/** Everything the broker knows about one kind of provider: written once, in the provider's own file, and listed in catalog.ts. */
export type ProviderDescriptor = TokenProviderDescriptor | SigningProviderDescriptor
