import { randomBytes } from 'node:crypto'
import { expect } from 'vitest'
import type { Grant } from '../../src/providers/types.js'
import { StoreError, type StoreErrorKind } from '../../src/errors.js'

/** A grant with random, recognisable tokens (so a test can look for them in Redis and in logs). */
export function makeGrant (options: { expiresInMs?: number, now?: number, optional?: boolean } = {}): Grant {
  const now = options.now ?? Date.now()
  const grant: Grant = {
    accessToken: `at-${randomBytes(12).toString('hex')}`,
    tokenType: 'Bearer',
    obtainedAt: now,
    expiresAt: now + (options.expiresInMs ?? 10 * 60_000)
  }
  if (options.optional !== false) {
    grant.scope = 'kivra.v1.tenant.abc.*'
    grant.refreshToken = `rt-${randomBytes(12).toString('hex')}`
  }
  return grant
}

/** A base64 AES-256 key, as `openssl rand -base64 32` prints it. */
export function randomKey (): string {
  return randomBytes(32).toString('base64')
}

export function randomGrantKey (): string {
  return `cred-${randomBytes(4).toString('hex')}`
}

/** Collects the keys a store announces through onGrant. */
export function recordGrants (store: { onGrant: (listener: (key: string, fence?: number) => void) => () => void }): { keys: string[], fences: Array<number | undefined>, stop: () => void } {
  const keys: string[] = []
  const fences: Array<number | undefined> = []
  const stop = store.onGrant((key, fence) => { keys.push(key); fences.push(fence) })
  return { keys, fences, stop }
}

/**
 * Asserts that `promise` rejects with a StoreError (optionally of `reason`) no later than `withinMs` after
 * the call started, rather than hanging.
 */
export async function expectStoreErrorWithin (promise: Promise<unknown>, withinMs: number, reason?: StoreErrorKind): Promise<StoreError> {
  const started = Date.now()
  let failure: unknown
  try {
    await promise
  } catch (err) {
    failure = err
  }
  const elapsed = Date.now() - started
  expect(failure, 'expected a rejection').toBeInstanceOf(StoreError)
  const err = failure as StoreError
  expect(err.name).toBe('StoreError')
  if (reason !== undefined) expect(err.kind).toBe(reason)
  expect(elapsed).toBeLessThanOrEqual(withinMs)
  return err
}
