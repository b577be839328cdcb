import { decodeJwt } from 'jose'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createKigoAdapter } from '../../src/providers/kigo.js'
import { fixedNow, providerError, testContext, testCredential } from '../support/providers/context.js'
import { startKigoStandIn, type KigoStandIn } from '../support/providers/kigo.js'

describe('kigo adapter', () => {
  const adapter = createKigoAdapter()
  let kigo: KigoStandIn

  beforeAll(async () => { kigo = await startKigoStandIn({ now: () => fixedNow }) })
  afterAll(async () => { await kigo.close() })
  beforeEach(() => {
    kigo.clearFaults()
    kigo.tokenFormat = 'opaque'
    kigo.lifetimeSeconds = 1800
  })

  const credential = (overrides: Record<string, unknown> = {}): ReturnType<typeof testCredential> =>
    testCredential('kigo', { base_url: kigo.url, ...overrides })

  describe('mint', () => {
    it('posts JSON { api_key, partner_id } and gives an opaque token the documented 30 minutes', async () => {
      const grant = await adapter.mint(kigo.secret, testContext(credential()))
      expect(grant).toMatchObject({ tokenType: 'Bearer', obtainedAt: fixedNow, expiresAt: fixedNow + 1_800_000 })
      expect(kigo.isTokenValid(grant.accessToken)).toBe(true)
      const sent = kigo.requests.at(-1)
      expect(sent).toMatchObject({ method: 'POST', path: '/api/v1/auth/sessions' })
      expect(sent?.headers['content-type']).toBe('application/json')
      expect(JSON.parse(sent?.body ?? '')).toEqual({ api_key: kigo.secret.api_key, partner_id: kigo.secret.partner_id })
    })

    it('uses lifetime_seconds for an opaque token when configured', async () => {
      const grant = await adapter.mint(kigo.secret, testContext(credential({ lifetime_seconds: 900 })))
      expect(grant.expiresAt).toBe(fixedNow + 900_000)
    })
  })

  describe('lifetime of JWT tokens', () => {
    it('prefers the JWT exp over the configured lifetime', async () => {
      kigo.tokenFormat = 'jwt'
      kigo.lifetimeSeconds = 600
      const grant = await adapter.mint(kigo.secret, testContext(credential({ lifetime_seconds: 1800 })))
      const exp = decodeJwt(grant.accessToken).exp
      expect(exp).toBe(Math.floor(fixedNow / 1000) + 600)
      expect(grant.expiresAt).toBe((exp ?? 0) * 1000)
    })

    it('uses the configured lifetime for a JWT without exp', async () => {
      kigo.setFault({ kind: 'missing-lifetime' }, { times: 1 })
      const grant = await adapter.mint(kigo.secret, testContext(credential({ lifetime_seconds: 1200 })))
      expect(grant.accessToken.split('.')).toHaveLength(3)
      expect(grant.expiresAt).toBe(fixedNow + 1_200_000)
    })

    it('refuses a garbage exp (a string, or milliseconds by mistake) as a bad answer, never a guessed lifetime', async () => {
      for (const value of ['tomorrow', fixedNow + 600_000, { at: 5 }]) {
        kigo.setFault({ kind: 'malformed-lifetime', value }, { times: 1 })
        const err = await providerError(adapter.mint(kigo.secret, testContext(credential())))
        expect(err).toMatchObject({ kind: 'bad-response', status: 200 })
        expect(err.message).toContain('exp')
      }
    })

    it('refuses a token whose exp is already past (bad-response)', async () => {
      kigo.setFault({ kind: 'malformed-lifetime', value: Math.floor(fixedNow / 1000) - 60 }, { times: 1 })
      const err = await providerError(adapter.mint(kigo.secret, testContext(credential())))
      expect(err.kind).toBe('bad-response')
      expect(err.message).toContain('exp')
    })
  })

  describe('failures', () => {
    it('401 is permanent and quotes Kigo\'s message', async () => {
      const err = await providerError(adapter.mint({ ...kigo.secret, api_key: 'wrong' }, testContext(credential())))
      expect(err).toMatchObject({ kind: 'permanent', status: 401 })
      expect(err.message).toContain('Invalid api_key or partner_id')
    })

    it('names a missing secret field and sends nothing', async () => {
      const attempts = kigo.mintAttempts
      const err = await providerError(adapter.mint({ api_key: 'k' }, testContext(credential())))
      expect(err).toMatchObject({ kind: 'permanent' })
      expect(err.message).toContain('"partner_id"')
      expect(kigo.mintAttempts).toBe(attempts)
    })

    it('5xx, 429 (with Retry-After), dropped connections and timeouts are transient', async () => {
      kigo.setFault({ kind: 'server-error', status: 500 }, { times: 1 })
      expect(await providerError(adapter.mint(kigo.secret, testContext(credential())))).toMatchObject({ kind: 'transient', status: 500 })
      kigo.setFault({ kind: 'rate-limit', retryAfter: '3' }, { times: 1 })
      expect(await providerError(adapter.mint(kigo.secret, testContext(credential())))).toMatchObject({ kind: 'transient', status: 429, retryAfterMs: 3000 })
      kigo.setFault({ kind: 'drop' }, { times: 1 })
      expect(await providerError(adapter.mint(kigo.secret, testContext(credential())))).toMatchObject({ kind: 'transient' })
      kigo.setFault({ kind: 'latency', ms: 1500 }, { times: 1 })
      expect(await providerError(adapter.mint(kigo.secret, testContext(credential({ timeout_ms: 100 }))))).toMatchObject({ kind: 'transient' })
    })

    it('malformed JSON and a missing token are bad-responses', async () => {
      kigo.setFault({ kind: 'malformed-json' }, { times: 1 })
      expect(await providerError(adapter.mint(kigo.secret, testContext(credential())))).toMatchObject({ kind: 'bad-response' })
      kigo.setFault({ kind: 'missing-token' }, { times: 1 })
      const err = await providerError(adapter.mint(kigo.secret, testContext(credential())))
      expect(err.kind).toBe('bad-response')
      expect(err.message).toContain('token')
    })
  })
})
