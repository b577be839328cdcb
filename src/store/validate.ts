import type { Grant } from '../providers/types.js'
import { GrantSchema } from './encryption.js'
import { StoreError } from '../errors.js'

const grantKeyPattern = /^[^{}\s]{1,200}$/

/**
 * Grant keys become part of Redis keys inside a `{...}` hash tag, so braces (which would move the tag)
 * and whitespace are refused with a StoreError ('invalid'); credential ids never contain them.
 */
export function checkGrantKey (key: string): void {
  if (typeof key !== 'string' || !grantKeyPattern.test(key)) throw new StoreError('invalid', 'invalid grant key')
}

/** A lease time in whole milliseconds (Redis PX takes integers), at least 1. */
export function checkLeaseTtl (ttlMs: number): number {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new StoreError('invalid', 'lease time must be a positive number of milliseconds')
  return Math.ceil(ttlMs)
}

/** The grant as stored (known fields only), or a StoreError ('invalid') when it is not a grant. */
export function checkGrant (grant: Grant): Grant {
  const result = GrantSchema.safeParse(grant)
  // The zod issues are not attached: they could quote the token.
  if (!result.success) throw new StoreError('invalid', 'not a grant')
  return result.data
}

/** Milliseconds until the grant expires, rounded up; 0 or less when it already has. */
export function grantTimeToLive (grant: Grant, now: number): number {
  return Math.ceil(grant.expiresAt - now)
}

/** The longest a lease may have left and still be taken for a holder's: more means it was set by something else (and would block its key). */
export function maxSaneLeaseTtl (ttlMs: number): number {
  return Math.max(60_000, 4 * ttlMs)
}
