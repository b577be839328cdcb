import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { UnsecuredJWT } from 'jose'
import { beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createAuthenticator, type Authenticator } from '../../src/auth/authenticate.js'
import { CallerJwtSchema, CallerSchema, type Caller } from '../../src/config.js'
import { BrokerError, ConfigError } from '../../src/errors.js'
import { sha256Hex, tempFile } from '../support/app.js'
import { useCleanup } from '../support/fixtures.js'
import { captureLogs, type CapturedLogs } from '../support/logs.js'
import { audience, callerToken, issuer, signingKey, startJwksServer, type JwksServer, type SigningKey } from './jwt-issuer.js'
import { sleep } from '../../src/time.js'

const mailerSubject = 'system:serviceaccount:mail:mailer'
const billingKey = `billing-${randomBytes(16).toString('hex')}`
const callers: Caller[] = [
  CallerSchema.parse({ id: 'billing', api_key_sha256: sha256Hex(billingKey) }),
  CallerSchema.parse({ id: 'mailer', jwt_subject: mailerSubject }),
  CallerSchema.parse({ id: 'ops', jwt_subject: 'system:serviceaccount:ops:console', admin: true })
]

/** The error an authentication attempt fails with (the test fails if it succeeds). */
async function rejection (authenticator: Authenticator, authorization: string | undefined): Promise<BrokerError> {
  try {
    await authenticator.authenticate(authorization)
  } catch (err) {
    if (err instanceof BrokerError) return err
    throw err
  }
  throw new Error('expected the authentication to fail')
}

describe('createAuthenticator', () => {
  describe('API keys', () => {
    const authenticator = createAuthenticator({ callers, callerJwt: undefined, log: captureLogs().log })

    it('finds the caller whose hash matches the presented key', async () => {
      expect((await authenticator.authenticate(`Bearer ${billingKey}`)).id).toBe('billing')
      expect((await authenticator.authenticate(`bearer   ${billingKey} `)).id).toBe('billing')
    })

    it.each([
      ['no header', undefined],
      ['an empty header', ''],
      ['another scheme', `Basic ${billingKey}`],
      ['no credential', 'Bearer '],
      ['two credentials', `Bearer ${billingKey} x`],
      ['a wrong key', 'Bearer not-the-key'],
      ['the configured hash instead of the key', `Bearer ${sha256Hex(billingKey)}`],
      ['the key with a character changed', `Bearer ${billingKey.slice(0, -1)}x`],
      ['a JWT when no caller_jwt is configured', 'Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln']
    ])('401 CB_UNAUTHENTICATED for %s', async (_name, authorization) => {
      const err = await rejection(authenticator, authorization)
      expect(err.code).toBe('CB_UNAUTHENTICATED')
      expect(err.statusCode).toBe(401)
      expect(err.message).not.toContain(billingKey)
    })
  })

  describe('JWT callers with jwks_url', () => {
    let rsa: SigningKey
    let ec: SigningKey
    let es384: SigningKey
    let jwks: JwksServer
    let logs: CapturedLogs
    let authenticator: Authenticator
    const cooldownMs = 1000

    beforeAll(async () => {
      [rsa, ec, es384] = await Promise.all([signingKey('RS256'), signingKey('ES256'), signingKey('ES384')])
    })
    const cleanup = useCleanup()
    beforeEach(async () => {
      // ES384 is in the key set but not in the allow-list, to prove the allow-list, not the key set, decides.
      jwks = cleanup.add(await startJwksServer([rsa.jwk, ec.jwk, es384.jwk]))
      logs = captureLogs()
      authenticator = createAuthenticator({
        callers,
        callerJwt: CallerJwtSchema.parse({ issuer, audience, jwks_url: jwks.url }),
        log: logs.log,
        remoteJwks: { cooldownMs }
      })
    })

    const reject = async (token: string): Promise<BrokerError> => await rejection(authenticator, `Bearer ${token}`)

    it.each(['RS256', 'ES256'] as const)('accepts a valid %s token and maps its subject to the caller', async (alg) => {
      const token = await callerToken(alg === 'RS256' ? rsa : ec, { sub: mailerSubject })
      expect((await authenticator.authenticate(`Bearer ${token}`)).id).toBe('mailer')
    })

    it('accepts an audience list that includes ours', async () => {
      const token = await callerToken(rsa, { sub: mailerSubject, aud: ['https://kubernetes.default.svc', audience] })
      expect((await authenticator.authenticate(`Bearer ${token}`)).id).toBe('mailer')
    })

    it('accepts a token that expired within the clock tolerance (30 s), and one valid from a few seconds ahead', async () => {
      expect((await authenticator.authenticate(`Bearer ${await callerToken(rsa, { sub: mailerSubject, expiresIn: -10 })}`)).id).toBe('mailer')
      expect((await authenticator.authenticate(`Bearer ${await callerToken(rsa, { sub: mailerSubject, notBefore: 10 })}`)).id).toBe('mailer')
    })

    it('verifies a token once, then serves it from memory without fetching keys again', async () => {
      const token = await callerToken(rsa, { sub: mailerSubject })
      await authenticator.authenticate(`Bearer ${token}`)
      const fetches = jwks.fetches
      for (let i = 0; i < 5; i++) await authenticator.authenticate(`Bearer ${token}`)
      expect(jwks.fetches).toBe(fetches)
    })

    describe('401 CB_UNAUTHENTICATED', () => {
      it.each<[string, () => Promise<string>, string]>([
        ['a wrong issuer', async () => await callerToken(rsa, { sub: mailerSubject, iss: 'https://evil.example' }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
        ['no issuer', async () => await callerToken(rsa, { sub: mailerSubject, iss: null }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
        ['a wrong audience', async () => await callerToken(rsa, { sub: mailerSubject, aud: 'vault' }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
        ['an expiry beyond the clock tolerance', async () => await callerToken(rsa, { sub: mailerSubject, expiresIn: -31 }), 'ERR_JWT_EXPIRED'],
        ['no expiry', async () => await callerToken(rsa, { sub: mailerSubject, expiresIn: null }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
        ['no subject', async () => await callerToken(rsa, {}), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
        ['a not-before beyond the clock tolerance', async () => await callerToken(rsa, { sub: mailerSubject, notBefore: 120 }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
        ['an algorithm the config does not allow (ES384, key in the set)', async () => await callerToken(es384, { sub: mailerSubject }), 'ERR_JOSE_ALG_NOT_ALLOWED'],
        ['HS256 keyed with the public key id', async () => await callerToken({ privateKey: randomBytes(32), kid: rsa.kid, alg: 'HS256' }, { sub: mailerSubject }), 'ERR_JOSE_ALG_NOT_ALLOWED'],
        ['alg "none"', async () => new UnsecuredJWT({ sub: mailerSubject, iss: issuer, aud: audience, exp: Math.floor(Date.now() / 1000) + 60 }).encode(), 'ERR_JOSE_ALG_NOT_ALLOWED'],
        ['an RS256 header on an ES256 key', async () => await callerToken({ ...ec, alg: 'RS256' }, { sub: mailerSubject }).catch(async () => {
          // jose refuses to sign that; forge it: ES256 signature under an RS256 header.
          const good = await callerToken(ec, { sub: mailerSubject })
          const [, payload, signature] = good.split('.')
          return `${Buffer.from(JSON.stringify({ alg: 'RS256', kid: ec.kid })).toString('base64url')}.${payload}.${signature}`
        }), ''],
        ['an unknown kid', async () => await callerToken({ ...rsa, kid: 'not-a-known-kid' }, { sub: mailerSubject }), 'ERR_JWKS_NO_MATCHING_KEY'],
        ['a key that is not in the set (same kid)', async () => await callerToken({ ...(await signingKey('RS256')), kid: rsa.kid }, { sub: mailerSubject }), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED']
      ])('for %s', async (_name, make, reason) => {
        const err = await reject(await make())
        expect(err.code).toBe('CB_UNAUTHENTICATED')
        if (reason !== '') expect(err.message).toContain(reason)
      })

      it('for a tampered signature', async () => {
        const token = await callerToken(rsa, { sub: mailerSubject })
        const [header, payload, signature] = token.split('.') as [string, string, string]
        const flipped = Buffer.from(signature, 'base64url')
        flipped[0] = (flipped[0] as number) ^ 0xff
        const err = await reject(`${header}.${payload}.${flipped.toString('base64url')}`)
        expect(err.code).toBe('CB_UNAUTHENTICATED')
        expect(err.message).toContain('ERR_JWS_SIGNATURE_VERIFICATION_FAILED')
      })

      it('for a payload changed after signing (another subject)', async () => {
        const token = await callerToken(rsa, { sub: mailerSubject })
        const [header, payload, signature] = token.split('.') as [string, string, string]
        const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>
        const forged = Buffer.from(JSON.stringify({ ...claims, sub: 'system:serviceaccount:ops:console' })).toString('base64url')
        expect((await reject(`${header}.${forged}.${signature}`)).code).toBe('CB_UNAUTHENTICATED')
      })

      it('logs the reason at debug, never the token', async () => {
        const token = await callerToken(rsa, { sub: mailerSubject, aud: 'vault' })
        await reject(token)
        expect(logs.entries()).toContainEqual(expect.objectContaining({ level: 20, reason: 'ERR_JWT_CLAIM_VALIDATION_FAILED', msg: 'caller JWT rejected' }))
        expect(logs.text()).not.toContain(token)
        expect(logs.text()).not.toContain(token.split('.')[2])
      })
    })

    it('403 CB_FORBIDDEN for a valid token whose subject is no registered caller', async () => {
      const err = await reject(await callerToken(rsa, { sub: 'system:serviceaccount:default:intruder' }))
      expect(err.code).toBe('CB_FORBIDDEN')
      expect(err.statusCode).toBe(403)
    })

    it('follows key rotation: a token signed with a newly published key is accepted once the cooldown has passed', async () => {
      // Keys and tokens are made before the first fetch starts the cooldown: RSA key generation can take
      // longer than the cooldown on a busy machine.
      const next = await signingKey('RS256')
      const rotated = await callerToken(next, { sub: mailerSubject })
      const madeUp = await Promise.all(Array.from({ length: 10 }, async (_, i) => await callerToken({ ...next, kid: `made-up-${i}` }, { sub: mailerSubject })))
      const current = await callerToken(rsa, { sub: mailerSubject })

      expect((await authenticator.authenticate(`Bearer ${current}`)).id).toBe('mailer')
      expect(jwks.fetches).toBe(1)
      jwks.serve([rsa.jwk, next.jwk])
      // Within the cooldown the set is not refetched: an unknown kid is rejected, and costs the JWKS nothing.
      expect((await reject(rotated)).message).toContain('ERR_JWKS_NO_MATCHING_KEY')
      for (const token of madeUp) await reject(token)
      expect(jwks.fetches).toBe(1)

      await sleep(cooldownMs + 50)
      expect((await authenticator.authenticate(`Bearer ${rotated}`)).id).toBe('mailer')
      expect(jwks.fetches).toBe(2)

      // The old key is retired: new tokens signed with it stop working after the next refetch.
      jwks.serve([next.jwk])
      await sleep(cooldownMs + 50)
      await reject(await callerToken({ ...rsa, kid: 'another-unknown-kid' }, { sub: mailerSubject })) // triggers the refetch
      expect((await reject(await callerToken(rsa, { sub: mailerSubject }))).message).toContain('ERR_JWKS_NO_MATCHING_KEY')
    })

    describe('503 CB_CALLER_KEYS_UNAVAILABLE when the key set cannot be fetched (our problem, not the caller\'s)', () => {
      it.each(['error', 'garbage'] as const)('JWKS answering %s', async (mode) => {
        jwks.mode = mode
        const token = await callerToken(rsa, { sub: mailerSubject })
        const err = await reject(token)
        expect(err.code).toBe('CB_CALLER_KEYS_UNAVAILABLE')
        expect(err.statusCode).toBe(503)
        expect(err.retryAfterSeconds).toBeGreaterThanOrEqual(1)
        expect(logs.entries()).toContainEqual(expect.objectContaining({ level: 40, msg: 'caller JWT not verifiable: key set unavailable' }))
        expect(logs.text()).not.toContain(token)
      })

      it('once keys were fetched, a JWKS outage past cacheMaxAge keeps verifying with the last good keys', async () => {
        const shortLived = createAuthenticator({
          callers,
          callerJwt: CallerJwtSchema.parse({ issuer, audience, jwks_url: jwks.url }),
          log: logs.log,
          remoteJwks: { cooldownMs: 10, cacheMaxAgeMs: 50 }
        })
        expect((await shortLived.authenticate(`Bearer ${await callerToken(rsa, { sub: mailerSubject })}`)).id).toBe('mailer')
        jwks.mode = 'error'
        await sleep(120) // the cached key set is now stale
        const fetchesBefore = jwks.fetches
        // A new token (not in the verified-token cache), signed with a key the broker already had.
        expect((await shortLived.authenticate(`Bearer ${await callerToken(rsa, { sub: mailerSubject, extra: { jti: 'fresh' } })}`)).id).toBe('mailer')
        expect(jwks.fetches).toBeGreaterThan(fetchesBefore) // it did try to refresh
      })

      it('JWKS server gone: warns once per interval, not once per request', async () => {
        await jwks.close()
        for (let i = 0; i < 5; i++) {
          const err = await reject(await callerToken(rsa, { sub: mailerSubject }))
          expect(err.code).toBe('CB_CALLER_KEYS_UNAVAILABLE')
        }
        expect(logs.entries().filter(entry => entry.level === 40)).toHaveLength(1)
      })
    })
  })

  describe('JWT callers with jwks_file', () => {
    let rsa: SigningKey
    beforeAll(async () => { rsa = await signingKey('RS256') })

    it('verifies against the keys in the file', async () => {
      const file = tempFile('jwks.json', JSON.stringify({ keys: [rsa.jwk] }))
      const authenticator = createAuthenticator({ callers, callerJwt: CallerJwtSchema.parse({ issuer, audience, jwks_file: file }), log: captureLogs().log })
      expect((await authenticator.authenticate(`Bearer ${await callerToken(rsa, { sub: mailerSubject })}`)).id).toBe('mailer')
      expect((await rejection(authenticator, `Bearer ${await callerToken(rsa, { sub: mailerSubject, aud: 'other' })}`)).code).toBe('CB_UNAUTHENTICATED')
      const stranger = await signingKey('RS256', rsa.kid)
      expect((await rejection(authenticator, `Bearer ${await callerToken(stranger, { sub: mailerSubject })}`)).code).toBe('CB_UNAUTHENTICATED')
    })

    it('refuses to start on a missing or invalid file, naming caller_jwt.jwks_file', () => {
      const missing = CallerJwtSchema.parse({ issuer, audience, jwks_file: '/nonexistent/jwks.json' })
      expect(() => createAuthenticator({ callers, callerJwt: missing, log: captureLogs().log })).toThrow(ConfigError)
      const file = tempFile('jwks.json', '')
      writeFileSync(file, '{"not":"a key set"}')
      const invalid = CallerJwtSchema.parse({ issuer, audience, jwks_file: file })
      try {
        createAuthenticator({ callers, callerJwt: invalid, log: captureLogs().log })
        expect.unreachable()
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError)
        expect((err as ConfigError).problems).toEqual([expect.stringMatching(/^caller_jwt\.jwks_file: /)])
      }
    })
  })
})
