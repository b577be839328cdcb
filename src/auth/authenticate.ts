import * as crypto from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, jwksCache, jwtVerify, type JWKSCacheInput, type JWTVerifyGetKey } from 'jose'
import type { Logger } from 'pino'
import { type Caller, type CallerJwt } from '../config.js'
import { BrokerError, ConfigError } from '../errors.js'

export interface Authenticator {
  /** The caller presenting `authorization`, or a CB_UNAUTHENTICATED / CB_FORBIDDEN error. */
  authenticate: (authorization: string | undefined) => Promise<Caller>
  /**
   * The same without a promise where no I/O is needed: the caller of an API key or of a JWT verified
   * before (and not expired); undefined when a JWT must be verified first (use `authenticate`). Throws the
   * same errors as `authenticate` for a header that can never authenticate.
   */
  identify: (authorization: string | undefined) => Caller | undefined
}

/**
 * SHA-256 of the presented credential, once per request, as base64: the API-key comparison and the JWT
 * cache key both use it. `crypto.hash` (Node 20.12+, 21.7+) skips the Hash object createHash builds, and a
 * string digest skips the Buffer: on Node 20, 'buffer' output takes about 2 µs, 'base64' about 0.5 µs.
 */
const sha256: (text: string) => string = typeof crypto.hash === 'function'
  ? text => crypto.hash('sha256', text, 'base64')
  : text => crypto.createHash('sha256').update(text).digest('base64')

/**
 * Whether two digests are equal, in time that depends only on their length (every character is compared;
 * no early exit): timingSafeEqual would need Buffers, whose allocation per request costs more than this.
 */
function sameDigest (a: string, b: string): boolean {
  let difference = a.length ^ b.length
  for (let index = 0; index < b.length; index++) difference |= a.charCodeAt(index) ^ b.charCodeAt(index)
  return difference === 0
}

export interface AuthenticatorDeps {
  callers: readonly Caller[]
  callerJwt: CallerJwt | undefined
  log: Logger
  /** Key set override for tests; otherwise from jwks_url (cached, follows rotation) or jwks_file. */
  jwks?: JWTVerifyGetKey
  /** Remote key set timing (jwks_url); the defaults are the production values. */
  remoteJwks?: RemoteJwksOptions
}

export interface RemoteJwksOptions {
  /** A token with an unknown `kid` refetches the key set at most once per this time (rotation). Default 30 s. */
  cooldownMs?: number
  /** The key set is refetched when older than this, even without an unknown `kid`. Default 10 min. */
  cacheMaxAgeMs?: number
  /** Fetch timeout. Default 5 s. */
  timeoutMs?: number
}

/**
 * jose errors that say the broker could not get or use its key set (our side), as opposed to a token that
 * is bad (the caller's side): the generic JOSEError is what a non-200 or non-JSON JWKS answer throws.
 */
const keySetFailureCodes = new Set(['ERR_JOSE_GENERIC', 'ERR_JWKS_TIMEOUT', 'ERR_JWKS_INVALID', 'ERR_JWK_INVALID'])
/** How soon a caller may retry when the key set could not be fetched. */
const keySetRetryAfterSeconds = 5
const keySetWarningIntervalMs = 10_000

const jwtShape = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/
/** Verified JWTs are remembered until they expire, so a hot caller costs one hash, not one signature check, per request. */
const verifiedCacheLimit = 10_000

function unauthenticated (detail: string): BrokerError {
  return new BrokerError('CB_UNAUTHENTICATED', detail)
}

/**
 * Callers authenticate with `Authorization: Bearer <credential>`, where the credential is an API key
 * (compared as a SHA-256 hash, in constant time, against every configured hash) or a JWT such as a
 * Kubernetes projected service account token (signature, issuer, audience, algorithm and lifetime checked).
 */
/**
 * jose's remote key set refetches once its copy is older than cacheMaxAge and throws if that fails, even
 * though the keys it had are still good. An issuer whose JWKS endpoint is down for a while would then
 * lock out every JWT caller. This keeps verifying with the last key set fetched while a refetch fails
 * (a key removed from the JWKS stops being trusted at the first successful refetch).
 */
function remoteKeySetKeepingLastGood (url: URL, options: Parameters<typeof createRemoteJWKSet>[1]): JWTVerifyGetKey {
  // jose fills this object with { uat, jwks } after every successful fetch.
  const cache: { uat?: number, jwks?: Parameters<typeof createLocalJWKSet>[0] } = {}
  const remote = createRemoteJWKSet(url, { ...options, [jwksCache]: cache as JWKSCacheInput })
  return async (header, token) => {
    try {
      return await remote(header, token)
    } catch (err) {
      const fetchFailed = !(err instanceof joseErrors.JOSEError) || keySetFailureCodes.has(err.code)
      if (!fetchFailed || cache.jwks === undefined) throw err
      return await createLocalJWKSet(cache.jwks)(header, token)
    }
  }
}

export function createAuthenticator ({ callers, callerJwt, log, jwks, remoteJwks = {} }: AuthenticatorDeps): Authenticator {
  const keyCallers = callers.flatMap(caller => caller.api_key_sha256 === undefined ? [] : [{ caller, hash: Buffer.from(caller.api_key_sha256, 'hex').toString('base64') }])
  const subjects = new Map(callers.flatMap(caller => caller.jwt_subject === undefined ? [] : [[caller.jwt_subject, caller] as const]))
  const keySet: JWTVerifyGetKey | undefined = jwks ?? (callerJwt === undefined
    ? undefined
    : callerJwt.jwks_url !== undefined
      ? remoteKeySetKeepingLastGood(new URL(callerJwt.jwks_url), {
        timeoutDuration: remoteJwks.timeoutMs ?? 5000,
        // The cooldown bounds how often tokens with made-up `kid`s can make us refetch the key set.
        cooldownDuration: remoteJwks.cooldownMs ?? 30_000,
        cacheMaxAge: remoteJwks.cacheMaxAgeMs ?? 10 * 60_000
      })
      : localKeySet(callerJwt.jwks_file as string))
  const verified = new Map<string, { caller: Caller, expiresAt: number }>()
  let lastKeySetWarningAt = Number.NEGATIVE_INFINITY

  function byApiKey (hash: string): Caller | undefined {
    let found: Caller | undefined
    // Every hash is compared, with no early exit, so timing says nothing about which caller matched.
    for (const candidate of keyCallers) {
      if (sameDigest(hash, candidate.hash) && found === undefined) found = candidate.caller
    }
    return found
  }

  /** A JWT caller verified before and not expired since, by the token's hash. */
  function rememberedJwt (cacheKey: string): Caller | undefined {
    const cached = verified.get(cacheKey)
    return cached !== undefined && cached.expiresAt > Date.now() ? cached.caller : undefined
  }

  async function byJwt (token: string, cacheKey: string): Promise<Caller> {
    if (callerJwt === undefined || keySet === undefined) throw unauthenticated('bearer credential not recognised')
    let subject: string | undefined
    let expiresAt: number
    try {
      const { payload } = await jwtVerify(token, keySet, {
        issuer: callerJwt.issuer,
        audience: callerJwt.audience,
        algorithms: callerJwt.algorithms,
        clockTolerance: callerJwt.clock_tolerance_seconds,
        requiredClaims: ['exp', 'sub']
      })
      subject = payload.sub
      expiresAt = (payload.exp as number) * 1000
    } catch (err) {
      // A key set that cannot be fetched (network, timeout, non-200, not JSON) is our problem, not the
      // caller's: warn, and answer 503 so the caller retries instead of discarding a good token.
      if (!(err instanceof joseErrors.JOSEError) || keySetFailureCodes.has(err.code)) {
        const now = Date.now()
        // Until the key set is back every JWT request fails the same way: one warning per interval.
        const level = now - lastKeySetWarningAt >= keySetWarningIntervalMs ? 'warn' : 'debug'
        if (level === 'warn') lastKeySetWarningAt = now
        log[level]({ reason: err instanceof joseErrors.JOSEError ? err.code : 'ERR_JWKS_FETCH', err }, 'caller JWT not verifiable: key set unavailable')
        throw new BrokerError('CB_CALLER_KEYS_UNAVAILABLE', 'the caller key set (JWKS) could not be fetched; retry shortly', { retryAfterSeconds: keySetRetryAfterSeconds, cause: err })
      }
      log.debug({ reason: err.code }, 'caller JWT rejected')
      throw unauthenticated(`caller JWT rejected (${err.code})`)
    }
    const caller = subject === undefined ? undefined : subjects.get(subject)
    if (caller === undefined) throw new BrokerError('CB_FORBIDDEN', 'the JWT subject is not a registered caller')
    if (verified.size >= verifiedCacheLimit) verified.clear()
    verified.set(cacheKey, { caller, expiresAt })
    return caller
  }

  /** The presented credential and its hash; what it is: an API key's caller, a remembered JWT's, or a JWT to verify. */
  function recognise (authorization: string | undefined): { caller: Caller } | { jwt: string, cacheKey: string } {
    if (authorization === undefined || authorization === '') throw unauthenticated('missing Authorization header (expected "Bearer <api key or JWT>")')
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization)
    if (match === null) throw unauthenticated('malformed Authorization header (expected "Bearer <api key or JWT>")')
    const presented = match[1] as string
    const hash = sha256(presented)
    const caller = byApiKey(hash)
    if (caller !== undefined) return { caller }
    // A remembered hash is of a token that passed the shape check and was verified, so the check (about
    // 0.8 µs for a service account token's ~1 KB on this machine) is spent only on tokens not seen before.
    const remembered = rememberedJwt(hash)
    if (remembered !== undefined) return { caller: remembered }
    if (!jwtShape.test(presented) || callerJwt === undefined || keySet === undefined) throw unauthenticated('bearer credential not recognised')
    return { jwt: presented, cacheKey: hash }
  }

  return {
    async authenticate (authorization) {
      const recognised = recognise(authorization)
      return 'caller' in recognised ? recognised.caller : await byJwt(recognised.jwt, recognised.cacheKey)
    },
    identify (authorization) {
      const recognised = recognise(authorization)
      return 'caller' in recognised ? recognised.caller : undefined
    }
  }
}

/** A key set from caller_jwt.jwks_file, read once at start; an unreadable or invalid file is a config problem. */
function localKeySet (file: string): JWTVerifyGetKey {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError([`caller_jwt.jwks_file: cannot read "${file}" (${(err as NodeJS.ErrnoException).code ?? 'error'}); expected a JSON Web Key Set file`])
  }
  try {
    return createLocalJWKSet(JSON.parse(text) as Parameters<typeof createLocalJWKSet>[0])
  } catch {
    throw new ConfigError([`caller_jwt.jwks_file: "${file}" is not a JSON Web Key Set (expected {"keys": [...]})`])
  }
}
