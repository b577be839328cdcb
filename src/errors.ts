/**
 * Every error the broker raises itself, in one place (undici's lib/core/errors.js is the model).
 *
 * - `BrokerError` is what the API answers: a stable `code` from `errorTable`, an HTTP status, and a
 *   `detail` message that is safe to show a caller.
 * - The internal failures carry one discriminator, `kind`, whose values say how the engine reacts:
 *   `ProviderError` (a provider call), `SecretError` (Vault or the secrets file), `StoreError` (Redis or
 *   the memory store). `ConfigError` lists configuration problems, one per line.
 *
 * Recognise them with `instanceof`, never by `name`. Messages of these classes never hold a token, a
 * secret or an upstream body; the foreign error that caused one is kept as `cause`, for logs only.
 */

/**
 * The one table of error codes the API answers with. Codes are a public contract: callers branch on `code`,
 * never on `detail`. Add, never rename. Every code here is answered by some path and a test shows it
 * (test/errors-table.test.ts checks both). CB_STORE_UNAVAILABLE was listed but never answered: a store
 * outage is by design not an error a caller sees (each replica serves from its memory cache and refreshes
 * on its own), so it was removed rather than invented.
 */
export const errorTable = {
  CB_BAD_REQUEST: { status: 400, title: 'The request is malformed' },
  CB_UNAUTHENTICATED: { status: 401, title: 'No valid caller credentials' },
  CB_FORBIDDEN: { status: 403, title: 'This caller may not use this resource' },
  CB_SCOPE_NOT_ALLOWED: { status: 403, title: 'The credential does not allow this scope' },
  CB_CREDENTIAL_NOT_FOUND: { status: 404, title: 'No such credential' },
  CB_ROUTE_NOT_FOUND: { status: 404, title: 'No such route' },
  CB_REQUEST_TIMEOUT: { status: 408, title: 'The request did not arrive in time' },
  CB_UNSUPPORTED_OPERATION: { status: 409, title: 'This credential does not support the operation' },
  CB_PAYLOAD_TOO_LARGE: { status: 413, title: 'The request body is too large' },
  CB_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported content type' },
  CB_REQUEST_HEADERS_TOO_LARGE: { status: 431, title: 'The request headers are too large' },
  CB_MIN_TTL_UNSATISFIABLE: { status: 422, title: 'No token can live that long' },
  CB_RATE_LIMITED: { status: 429, title: 'Too many requests from this caller' },
  CB_SCOPED_GRANT_LIMIT: { status: 429, title: 'The credential holds as many scoped grants as it may' },
  CB_INTERNAL: { status: 500, title: 'Internal error' },
  CB_PROVIDER_REJECTED_CREDENTIALS: { status: 502, title: 'The provider rejected the configured client credentials' },
  CB_PROVIDER_BAD_RESPONSE: { status: 502, title: 'The provider answered something we cannot use' },
  CB_USER_SESSION_REFUSED: { status: 502, title: 'The provider refused to create or renew the user session' },
  CB_UPSTREAM_UNAVAILABLE: { status: 502, title: 'The provider API could not be reached' },
  CB_PROVIDER_UNAVAILABLE: { status: 503, title: 'The provider is unavailable; no token with enough life left' },
  CB_REFRESH_TIMEOUT: { status: 503, title: 'A refresh is in progress and did not finish in time' },
  CB_SECRET_UNAVAILABLE: { status: 503, title: 'The secret could not be read' },
  CB_NOT_READY: { status: 503, title: 'The broker is not ready' },
  CB_CALLER_KEYS_UNAVAILABLE: { status: 503, title: 'Caller JWTs cannot be verified: the key set is unavailable' },
  CB_UPSTREAM_TIMEOUT: { status: 504, title: 'The provider API did not answer in time' }
} as const satisfies Record<string, { status: number, title: string }>

export type ErrorCode = keyof typeof errorTable

/** The base of every error class below: `err instanceof CredentialBrokerError` means "ours, safe to log with its message". */
export abstract class CredentialBrokerError extends Error {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
  }
}

/** An internal failure whose `kind` says how the engine reacts to it. */
abstract class KindedError<K extends string> extends CredentialBrokerError {
  readonly kind: K
  constructor (kind: K, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.kind = kind
  }
}

export interface BrokerErrorOptions {
  /** Seconds after which a retry may succeed; becomes the `Retry-After` header. */
  retryAfterSeconds?: number | undefined
  /** Kept for logs only, never sent to a caller. */
  cause?: unknown
  /** Extra machine-readable members of the problem document. Never put secrets here. */
  extensions?: Record<string, unknown> | undefined
}

/**
 * A domain error with a stable code, as the API answers it. `message` becomes the problem `detail`: it
 * must never contain a token, a secret or an upstream body.
 */
export class BrokerError extends CredentialBrokerError {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly retryAfterSeconds: number | undefined
  readonly extensions: Record<string, unknown> | undefined

  constructor (code: ErrorCode, detail?: string, options: BrokerErrorOptions = {}) {
    super(detail ?? errorTable[code].title, options)
    this.code = code
    this.statusCode = errorTable[code].status
    this.retryAfterSeconds = options.retryAfterSeconds
    this.extensions = options.extensions
  }
}

/**
 * permanent: the provider rejected our client credentials (wrong or rotated secret) — retrying with the
 * same secret cannot help. transient: network, timeout, 5xx, 429 — retry with backoff. bad-response: the
 * provider answered 2xx with something we cannot use — retried like transient, reported distinctly.
 */
export type ProviderErrorKind = 'permanent' | 'transient' | 'bad-response'

export interface ProviderErrorOptions {
  status?: number | undefined
  /** The provider's own error code (e.g. Kivra "40104"), safe to log and show operators. */
  providerCode?: string | undefined
  /** From a Retry-After header, in milliseconds. */
  retryAfterMs?: number | undefined
  /** e.g. Kivra's x-correlation-id, for support tickets. */
  correlationId?: string | undefined
  cause?: unknown
}

/** An error from a provider call. The message never contains a token, a secret or the raw upstream body. */
export class ProviderError extends KindedError<ProviderErrorKind> {
  readonly status: number | undefined
  readonly providerCode: string | undefined
  readonly retryAfterMs: number | undefined
  readonly correlationId: string | undefined

  constructor (kind: ProviderErrorKind, message: string, options: ProviderErrorOptions = {}) {
    super(kind, message, options)
    this.status = options.status
    this.providerCode = options.providerCode
    this.retryAfterMs = options.retryAfterMs
    this.correlationId = options.correlationId
  }
}

/** The provider endpoint's circuit is open: no call was made (the breaker's schedule says when one may be). */
export class CircuitOpenError extends ProviderError {
  constructor (retryAfterMs: number) {
    super('transient', 'circuit open: the provider failed just now; waiting for the next probe', { retryAfterMs })
  }
}

/** not_found: the path has no secret; denied: permission; unavailable: network, sealed, 5xx; invalid: bad shape. */
export type SecretErrorKind = 'not_found' | 'denied' | 'unavailable' | 'invalid'

/** An error from a secret source. Never carries a secret value or a Vault token. */
export class SecretError extends KindedError<SecretErrorKind> {}

/**
 * unavailable: Redis is down, unreachable or too slow (the caller serves from its local cache); rejected:
 * Redis answered with an error (out of memory, read-only replica); closed: the store was closed; invalid:
 * a bad argument or configuration (a bug or an operator mistake, not an outage).
 */
export type StoreErrorKind = 'unavailable' | 'rejected' | 'closed' | 'invalid'

/** An error from the grant store. The message is short and fixed: never a grant, a key value or a Redis reply. */
export class StoreError extends KindedError<StoreErrorKind> {}

/** Configuration problems, one per line, each naming where it is, what is wrong and what is expected. */
export class ConfigError extends CredentialBrokerError {
  readonly problems: readonly string[]
  constructor (problems: string[]) {
    super(`invalid configuration:\n${problems.map(p => `  - ${p}`).join('\n')}`)
    this.problems = problems
  }
}
