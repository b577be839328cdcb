/** Small helpers every adapter shares: secret field checks, lifetime parsing, JWT `exp`, grant building. */
import { decodeJwt } from 'jose'
import type { Environment, Grant, SecretData } from './types.js'
import type { CredentialConfig } from '../config.js'
import { ProviderError } from '../errors.js'

/** Longest lifetime we believe from a provider; anything longer is a unit mistake or garbage. */
export const maxLifetimeSeconds = 366 * 86_400

/**
 * Throws a permanent ProviderError naming every missing (or empty) field, never a value: a secret without
 * its fields is a Vault/SECRETS_FILE mistake that no retry can fix.
 */
export function requireSecretFields (provider: string, secret: SecretData, fields: readonly string[]): void {
  const missing = fields.filter(field => typeof secret[field] !== 'string' || secret[field] === '')
  if (missing.length > 0) {
    throw new ProviderError('permanent', `${provider} secret is missing field${missing.length > 1 ? 's' : ''} ${missing.map(f => `"${f}"`).join(', ')}`)
  }
}

/** Reads a secret field already checked by requireSecretFields. */
export function secretField (secret: SecretData, field: string): string {
  const value = secret[field]
  if (value === undefined) throw new ProviderError('permanent', `secret is missing field "${field}"`)
  return value
}

/**
 * A lifetime in seconds from a provider field that may be a number or a numeric string (Klavi documents
 * `expireIn` as a string but shows a number). Undefined when absent, not numeric, not positive or absurd.
 */
export function parseLifetimeSeconds (value: unknown): number | undefined {
  let seconds: number
  if (typeof value === 'number') seconds = value
  else if (typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value)) seconds = Number(value)
  else return undefined
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > maxLifetimeSeconds) return undefined
  return seconds
}

/**
 * The `exp` claim (epoch ms) of a token that is a JWT, read without verification: the broker only uses it
 * to schedule refreshes, the provider still verifies the token. Undefined for opaque tokens, tokens that
 * do not decode, and an `exp` that is not a number or lies more than a year ahead (a unit mistake).
 */
export function jwtExpiryMs (token: string, nowMs: number): number | undefined {
  if (token.split('.').length !== 3) return undefined
  let exp: unknown
  try {
    exp = decodeJwt(token).exp
  } catch {
    return undefined
  }
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return undefined
  const expMs = exp * 1000
  if (expMs > nowMs + maxLifetimeSeconds * 1000) return undefined
  return expMs
}

/** Where a stated lifetime came from, for the error that refuses it (never the value: it may be a token). */
export interface LifetimeSource {
  operation: string
  field: string
  status: number
  correlationId?: string | undefined
}

/**
 * The one reading of a lifetime a provider states: undefined when the field is absent (the adapter then
 * uses the configured or documented lifetime); the seconds when it is a positive number (or numeric string)
 * of at most a year; anything else present — null, 0, negative, not a number, absurdly long — is a bad
 * answer, never a guessed lifetime (a guess could hand out a token the provider already considers expired).
 */
export function statedLifetimeSeconds (value: unknown, source: LifetimeSource): number | undefined {
  if (value === undefined) return undefined
  const seconds = parseLifetimeSeconds(value)
  if (seconds === undefined) {
    throw new ProviderError('bad-response', `${source.operation}: HTTP ${source.status} with an unusable ${source.field}`, { status: source.status, correlationId: source.correlationId })
  }
  return seconds
}

/**
 * The `exp` of a token that is a JWT, as epoch ms: undefined when it is no JWT or has no `exp`; an `exp`
 * that is not a number, already past, or more than a year ahead is a bad answer (as statedLifetimeSeconds).
 */
export function statedJwtExpiryMs (token: string, nowMs: number, source: LifetimeSource): number | undefined {
  let exp: unknown
  try {
    if (token.split('.').length !== 3) return undefined
    exp = decodeJwt(token).exp
  } catch {
    return undefined // opaque after all
  }
  if (exp === undefined) return undefined
  const expMs = jwtExpiryMs(token, nowMs)
  if (expMs === undefined || expMs <= nowMs) {
    throw new ProviderError('bad-response', `${source.operation}: HTTP ${source.status} with a token whose exp is unusable (past, absurd or not a number; check the clock)`, { status: source.status, correlationId: source.correlationId })
  }
  return expMs
}

/** OAuth2 token types are case-insensitive (RFC 6749 §5.1); callers get the canonical "Bearer". */
export function normalizeTokenType (tokenType: string | undefined): string {
  return tokenType === undefined || tokenType.toLowerCase() === 'bearer' ? 'Bearer' : tokenType
}

/** A grant that lives `lifetimeSeconds` from `obtainedAt` (epoch ms). */
export function grantFor (fields: { accessToken: string, tokenType?: string | undefined, scope?: string | undefined, refreshToken?: string | undefined }, obtainedAt: number, lifetimeSeconds: number): Grant {
  return {
    accessToken: fields.accessToken,
    tokenType: normalizeTokenType(fields.tokenType),
    obtainedAt,
    expiresAt: obtainedAt + Math.floor(lifetimeSeconds * 1000),
    scope: fields.scope,
    refreshToken: fields.refreshToken
  }
}

type HostedCredential = Pick<CredentialConfig, 'provider' | 'environment' | 'base_url'>

/**
 * The base URL a credential talks to: its `base_url` override (stand-ins in tests, Klavi's "testing" host,
 * a proxy), else the provider's documented host for its environment. Trailing slashes are dropped so that
 * a documented path can be appended as is. Throws a permanent ProviderError for a provider without
 * documented hosts (generic OAuth2: its credentials name a token_url).
 */
export function baseUrlOf (credential: HostedCredential, hosts: Readonly<Record<Environment, string>> | undefined): string {
  if (credential.base_url !== undefined) return credential.base_url.replace(/\/+$/, '')
  if (hosts === undefined) throw new ProviderError('permanent', `${credential.provider} credentials have no documented host; configure token_url`)
  return hosts[credential.environment]
}

/**
 * The URL of a documented endpoint (`path` starts with "/") under the credential's base URL. A base URL
 * with a path prefix (a proxy) keeps its prefix, which `new URL(path, base)` would drop.
 */
export function endpointUrlOf (credential: HostedCredential, hosts: Readonly<Record<Environment, string>> | undefined, path: string): URL {
  return new URL(baseUrlOf(credential, hosts) + path)
}
