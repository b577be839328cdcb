/**
 * Why a store call failed. unavailable: Redis is down, unreachable or too slow (the caller serves from its
 * local cache); rejected: Redis answered with an error (out of memory, read-only replica); closed: the
 * store was closed; invalid: a bad argument or configuration (a bug or an operator mistake, not an outage).
 */
export type StoreErrorReason = 'unavailable' | 'rejected' | 'closed' | 'invalid'

/**
 * An error from the grant store. The message is short and fixed: it never holds a grant, a key value or a
 * Redis reply; the underlying client error, if any, is kept as `cause` for logs only.
 */
export class StoreError extends Error {
  readonly reason: StoreErrorReason

  constructor (reason: StoreErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'StoreError'
    this.reason = reason
  }
}

/** True for errors thrown by a grant store. */
export function isStoreError (err: unknown): err is StoreError {
  return err instanceof StoreError
}
