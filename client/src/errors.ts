/**
 * The one error class of the client. Broker answers keep the problem document's `code`, `status`,
 * `Retry-After` and request id; failures that never got an answer from the broker carry a client-side
 * code (`CB_CLIENT_*`) and `status` 0. Messages name the operation and the credential, never a token.
 */

/** Codes the client itself raises; the broker's own codes (`CB_FORBIDDEN`, …) come from its answers. */
export const clientErrorCodes = {
  /** A bad argument or option (credential id, min TTL, proxy path, base URL): nothing was sent. */
  CB_CLIENT_INVALID_ARGUMENT: 'a bad argument or option; nothing was sent',
  /** No answer (response headers) within `timeoutMs`. */
  CB_CLIENT_TIMEOUT: 'no answer within the timeout',
  /** The connection failed: refused, reset, DNS, TLS. */
  CB_CLIENT_NETWORK: 'the connection failed',
  /** The broker answered something its API does not document (not problem+json, a malformed body). */
  CB_CLIENT_BAD_RESPONSE: 'the answer is not what the broker API documents',
  /** The `token` function given to createBrokerClient threw or returned an empty value. */
  CB_CLIENT_CALLER_TOKEN: 'the caller token could not be obtained'
} as const

export type ClientErrorCode = keyof typeof clientErrorCodes

/** What a BrokerError is made from. */
export interface BrokerErrorInit {
  /** The problem's `code` (e.g. `CB_PROVIDER_UNAVAILABLE`) or a client code (`CB_CLIENT_TIMEOUT`). */
  code: string
  /** The HTTP status of the broker's answer; 0 when there was none. */
  status: number
  /** The problem's `detail` (the broker never puts a token or secret there). */
  detail?: string | undefined
  /** Seconds after which a retry may succeed (`Retry-After`), when the broker said. */
  retryAfter?: number | undefined
  /** The broker's request id (problem `request_id` or `x-request-id`), to find its log lines. */
  requestId?: string | undefined
  /** Field errors of a `CB_BAD_REQUEST`. */
  errors?: ReadonlyArray<{ path: string, message: string }> | undefined
  cause?: unknown
}

/**
 * Every failure of the client is a BrokerError: branch on `code` (stable), not on `message`.
 *
 * ```ts
 * try { await client.getToken('kivra-production') } catch (err) {
 *   if (err instanceof BrokerError && err.code === 'CB_PROVIDER_UNAVAILABLE') retryLater(err.retryAfter)
 * }
 * ```
 */
export class BrokerError extends Error {
  override readonly name = 'BrokerError'
  readonly code: string
  /** HTTP status of the broker's answer; 0 for client-side failures (no answer). */
  readonly status: number
  /** Seconds to wait before a retry may succeed, from `Retry-After` (429 and 503). */
  readonly retryAfter: number | undefined
  /** The broker's request id, to look the request up in its log. */
  readonly requestId: string | undefined
  /** The problem's detail, or the client's description. */
  readonly detail: string | undefined
  /** Field errors of a `CB_BAD_REQUEST`. */
  readonly errors: ReadonlyArray<{ path: string, message: string }> | undefined
  /** True for the client's own codes (`CB_CLIENT_*`: no broker answer, or one the client could not use). */
  readonly clientSide: boolean

  constructor (message: string, init: BrokerErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause })
    this.code = init.code
    this.status = init.status
    this.retryAfter = init.retryAfter
    this.requestId = init.requestId
    this.detail = init.detail
    this.errors = init.errors
    this.clientSide = init.code.startsWith('CB_CLIENT_')
  }

}

/** A client-side BrokerError (status 0 unless an answer was seen). */
export function clientError (code: ClientErrorCode, message: string, options: { cause?: unknown, status?: number, requestId?: string | undefined } = {}): BrokerError {
  return new BrokerError(message, { code, status: options.status ?? 0, detail: clientErrorCodes[code], requestId: options.requestId, cause: options.cause })
}
