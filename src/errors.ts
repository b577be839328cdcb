/**
 * The one table of error codes the API answers with. Codes are a public contract: callers branch on
 * `code`, never on `detail`. Add, never rename.
 */
export const errorTable = {
  CB_BAD_REQUEST: { status: 400, title: 'The request is malformed' },
  CB_UNAUTHENTICATED: { status: 401, title: 'No valid caller credentials' },
  CB_FORBIDDEN: { status: 403, title: 'This caller may not use this resource' },
  CB_CREDENTIAL_NOT_FOUND: { status: 404, title: 'No such credential' },
  CB_ROUTE_NOT_FOUND: { status: 404, title: 'No such route' },
  CB_UNSUPPORTED_OPERATION: { status: 409, title: 'This credential does not support the operation' },
  CB_PAYLOAD_TOO_LARGE: { status: 413, title: 'The request body is too large' },
  CB_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported content type' },
  CB_MIN_TTL_UNSATISFIABLE: { status: 422, title: 'No token can live that long' },
  CB_RATE_LIMITED: { status: 429, title: 'Too many requests from this caller' },
  CB_INTERNAL: { status: 500, title: 'Internal error' },
  CB_PROVIDER_REJECTED_CREDENTIALS: { status: 502, title: 'The provider rejected the configured client credentials' },
  CB_PROVIDER_BAD_RESPONSE: { status: 502, title: 'The provider answered something we cannot use' },
  CB_PROVIDER_UNAVAILABLE: { status: 503, title: 'The provider is unavailable; no token with enough life left' },
  CB_REFRESH_TIMEOUT: { status: 503, title: 'A refresh is in progress and did not finish in time' },
  CB_STORE_UNAVAILABLE: { status: 503, title: 'The grant store is unavailable' },
  CB_SECRET_UNAVAILABLE: { status: 503, title: 'The secret could not be read' },
  CB_NOT_READY: { status: 503, title: 'The broker is not ready' },
  CB_CALLER_KEYS_UNAVAILABLE: { status: 503, title: 'Caller JWTs cannot be verified: the key set is unavailable' }
} as const satisfies Record<string, { status: number, title: string }>

export type ErrorCode = keyof typeof errorTable

export interface BrokerErrorOptions {
  /** Seconds after which a retry may succeed; becomes the `Retry-After` header. */
  retryAfterSeconds?: number
  /** Kept for logs only, never sent to a caller. */
  cause?: unknown
  /** Extra machine-readable members of the problem document. Never put secrets here. */
  extensions?: Record<string, unknown>
}

/**
 * A domain error with a stable code. `message` becomes the problem `detail`: it must never contain a
 * token, a secret or an upstream body.
 */
export class BrokerError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly retryAfterSeconds: number | undefined
  readonly extensions: Record<string, unknown> | undefined

  constructor (code: ErrorCode, detail?: string, options: BrokerErrorOptions = {}) {
    super(detail ?? errorTable[code].title, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'BrokerError'
    this.code = code
    this.statusCode = errorTable[code].status
    this.retryAfterSeconds = options.retryAfterSeconds
    this.extensions = options.extensions
  }
}

export function isBrokerError (err: unknown): err is BrokerError {
  return err instanceof BrokerError
}
