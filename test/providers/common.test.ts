import { describe, expect, it } from 'vitest'
import { jwtExpiryMs, normalizeTokenType, parseLifetimeSeconds, requireSecretFields, statedJwtExpiryMs, statedLifetimeSeconds } from '../../src/providers/common.js'
import { fixedNow } from '../support/providers/context.js'
import { ProviderError } from '../../src/errors.js'

function unsignedJwt (payload: unknown): string {
  const encode = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
  return `${encode({ alg: 'HS256' })}.${encode(payload)}.c2ln`
}

describe('parseLifetimeSeconds', () => {
  it('accepts positive numbers and numeric strings', () => {
    expect(parseLifetimeSeconds(1800)).toBe(1800)
    expect(parseLifetimeSeconds('1800')).toBe(1800)
    expect(parseLifetimeSeconds(' 90.5 ')).toBe(90.5)
  })

  it('refuses missing, garbage, zero, negative, infinite and absurd values', () => {
    for (const value of [undefined, null, '', 'soon', '18OO', '1e3', '-5', -5, 0, Number.NaN, Number.POSITIVE_INFINITY, 10 ** 12, true, {}, [1800]]) {
      expect(parseLifetimeSeconds(value)).toBeUndefined()
    }
  })
})

describe('jwtExpiryMs', () => {
  const exp = fixedNow / 1000 + 600

  it('reads exp (seconds) of an unverified JWT as epoch ms', () => {
    expect(jwtExpiryMs(unsignedJwt({ exp }), fixedNow)).toBe(exp * 1000)
  })

  it('guards against garbage', () => {
    for (const token of ['opaque-token', 'a.b.c', 'a.b', unsignedJwt('not json'), unsignedJwt([1, 2]), unsignedJwt({ exp: 'soon' }), unsignedJwt({ sub: 'x' }), unsignedJwt({ exp: fixedNow + 600_000 })]) {
      expect(jwtExpiryMs(token, fixedNow)).toBeUndefined()
    }
  })
})

describe('statedLifetimeSeconds and statedJwtExpiryMs: absent is a fallback, unusable is a bad answer', () => {
  const source = { operation: 'x mint', field: 'expires_in', status: 200 }
  it('reads what is usable and answers undefined for what is absent', () => {
    expect(statedLifetimeSeconds('3600', source)).toBe(3600)
    expect(statedLifetimeSeconds(undefined, source)).toBeUndefined()
    expect(statedJwtExpiryMs('opaque-token', fixedNow, source)).toBeUndefined()
    expect(statedJwtExpiryMs(unsignedJwt({ sub: 'x' }), fixedNow, source)).toBeUndefined()
    expect(statedJwtExpiryMs(unsignedJwt({ exp: fixedNow / 1000 + 60 }), fixedNow, source)).toBe(fixedNow + 60_000)
  })

  it('refuses every present but unusable value with a bad-response naming the field, never the value', () => {
    for (const value of [0, -5, '', 'soon', 10 ** 12, true, {}, null]) {
      let caught: unknown
      try { statedLifetimeSeconds(value, source) } catch (err) { caught = err }
      expect(caught).toMatchObject({ kind: 'bad-response', status: 200, message: 'x mint: HTTP 200 with an unusable expires_in' })
    }
    for (const exp of ['soon', fixedNow / 1000 - 1, fixedNow * 1000]) {
      expect(() => statedJwtExpiryMs(unsignedJwt({ exp }), fixedNow, source)).toThrow(ProviderError)
    }
  })
})

describe('requireSecretFields', () => {
  it('names every missing or empty field, never a value', () => {
    try {
      requireSecretFields('kivra', { client_id: '', other: 'SECRET-VALUE' }, ['client_id', 'client_secret'])
      expect.unreachable()
    } catch (err) {
      expect(err).toBeInstanceOf(ProviderError)
      expect((err as ProviderError).kind).toBe('permanent')
      expect((err as Error).message).toBe('kivra secret is missing fields "client_id", "client_secret"')
    }
    expect(() => { requireSecretFields('kivra', { client_id: 'a', client_secret: 'b' }, ['client_id', 'client_secret']) }).not.toThrow()
  })
})

describe('normalizeTokenType', () => {
  it('canonicalises bearer and keeps other types', () => {
    expect(normalizeTokenType('bearer')).toBe('Bearer')
    expect(normalizeTokenType(undefined)).toBe('Bearer')
    expect(normalizeTokenType('DPoP')).toBe('DPoP')
  })
})
