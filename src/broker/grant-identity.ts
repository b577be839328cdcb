/**
 * Which grant is which, and which token is which: grant keys (the unit of state in the broker), token
 * fingerprints for logs and operators, and constant-time token comparison.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { CredentialConfig } from '../config.js'
import type { Grant, SessionUser } from '../providers/types.js'

export type { SessionUser }

/**
 * The store key of a credential's grant: its id and a hash of everything that shapes the grant, so a
 * config change (another host, scope or secret path) never serves a grant minted under the old settings.
 * Every guarantee of the engine — one mint per cycle, fencing, encryption, min_ttl — holds per grant key.
 */
export function grantKey (credential: CredentialConfig): string {
  const shape = JSON.stringify([credential.provider, credential.environment, credential.base_url, credential.token_url,
    credential.client_auth, credential.scope, credential.audience, credential.secret, credential.lifetime_seconds])
  return `${credential.id}#${createHash('sha256').update(shape).digest('hex').slice(0, 8)}`
}

/**
 * Which of a credential's grants: its default grant, a grant for a narrower scope set (normalised), or a
 * Kigo user session. Each variant is its own grant key with every guarantee of a grant key.
 */
export type GrantVariant =
  | { readonly kind: 'default' }
  | { readonly kind: 'scope', readonly scope: string }
  | { readonly kind: 'user', readonly user: SessionUser }

/** A scope set as one string: split on whitespace, de-duplicated, sorted, so equal sets share one grant. */
export function normalizeScope (scope: string): string {
  return [...new Set(scope.split(/\s+/).filter(part => part !== ''))].sort().join(' ')
}

/** A short hash naming a variant in a key without revealing it (a user id, a scope set). */
function variantHash (text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16)
}

/** The store key of a credential's grant of `variant`: the default key, plus the variant's hash. */
export function variantGrantKey (credential: CredentialConfig, variant: GrantVariant): string {
  const base = grantKey(credential)
  switch (variant.kind) {
    case 'default': return base
    case 'scope': return `${base}:scope:${variantHash(variant.scope)}`
    case 'user': return `${base}:user:${variantHash(variant.user.external_user_id)}`
  }
}

/** The hash audit lines carry instead of a Kigo user id. */
export function userFingerprint (externalUserId: string): string {
  return createHash('sha256').update(`user:${externalUserId}`).digest('base64url').slice(0, 12)
}

/** A short, non-reversible name for a token, for logs and operators: 12 characters of its SHA-256. */
export function fingerprint (token: string): string {
  return createHash('sha256').update(token).digest('base64url').slice(0, 12)
}

const fingerprints = new WeakMap<Grant, string>()

/** fingerprint() of a grant's token, computed once per grant (it is logged for every token handed out). */
export function grantFingerprint (grant: Grant): string {
  let value = fingerprints.get(grant)
  if (value === undefined) {
    value = fingerprint(grant.accessToken)
    fingerprints.set(grant, value)
  }
  return value
}

/** Whether two tokens are the same, in time independent of where they differ. */
export function sameToken (a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest())
}

/** A number in [0, 1) derived from the input, so every replica computes the same jitter for a grant. */
export function unitHash (input: string): number {
  return createHash('sha256').update(input).digest().readUInt32BE(0) / 2 ** 32
}
