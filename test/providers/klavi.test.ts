import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createKlaviAdapter } from '../../src/providers/klavi.js'
import type { Grant } from '../../src/providers/types.js'
import { fixedNow, providerError, testContext, testCredential } from '../support/providers/context.js'
import { startKlaviStandIn, type KlaviStandIn } from '../support/providers/klavi.js'

describe('klavi adapter', () => {
  const adapter = createKlaviAdapter()
  const refresh = adapter.refresh
  if (refresh === undefined) throw new Error('the klavi adapter must implement refresh')
  let klavi: KlaviStandIn
  // One clock for the stand-in; adapter calls get their own `now` so tests can model skew.
  let standInNow = fixedNow

  beforeAll(async () => { klavi = await startKlaviStandIn({ now: () => standInNow }) })
  afterAll(async () => { await klavi.close() })
  beforeEach(() => {
    klavi.clearFaults()
    klavi.lifetimeSeconds = 1800
    klavi.expireInAs = 'number'
    standInNow = fixedNow
  })

  const credential = (overrides: Record<string, unknown> = {}): ReturnType<typeof testCredential> =>
    testCredential('klavi', { base_url: klavi.url, ...overrides })

  describe('mint', () => {
    it('posts JSON { accessKey, secretKey } and lives expireIn seconds', async () => {
      const grant = await adapter.mint(klavi.secret, testContext(credential()))
      expect(grant).toMatchObject({ tokenType: 'Bearer', obtainedAt: fixedNow, expiresAt: fixedNow + 1_800_000 })
      const sent = klavi.requests.at(-1)
      expect(sent).toMatchObject({ method: 'POST', path: '/data/v1/auth' })
      expect(sent?.headers['content-type']).toBe('application/json')
      expect(JSON.parse(sent?.body ?? '')).toEqual(klavi.secret)
    })

    it('accepts expireIn as a numeric string ("1200")', async () => {
      klavi.expireInAs = 'string'
      klavi.lifetimeSeconds = 1200
      const ctx = testContext(credential())
      const grant = await adapter.mint(klavi.secret, ctx)
      expect(grant.expiresAt).toBe(fixedNow + 1_200_000)
      expect(ctx.captured.entries().some(l => l.level === 40)).toBe(false)
    })

    it('uses 1800 s and warns when expireIn is missing', async () => {
      klavi.lifetimeSeconds = 600
      klavi.setFault({ kind: 'missing-lifetime' }, { times: 1 })
      const ctx = testContext(credential())
      const grant = await adapter.mint(klavi.secret, ctx)
      expect(grant.expiresAt).toBe(fixedNow + 1_800_000)
      expect(ctx.captured.entries().find(l => l.level === 40)).toMatchObject({ credentialId: 'klavi-test', lifetimeSeconds: 1800, msg: 'klavi answer has no expireIn; using the configured or documented lifetime' })
    })

    it('refuses an expireIn that is present but unusable as a bad answer, never a guessed lifetime', async () => {
      for (const value of ['soon', '18OO', -5, 0, true, '', 10 ** 12]) {
        klavi.setFault({ kind: 'malformed-lifetime', value }, { times: 1 })
        const err = await providerError(adapter.mint(klavi.secret, testContext(credential({ lifetime_seconds: 900 }))))
        expect(err).toMatchObject({ kind: 'bad-response', status: 200 })
        expect(err.message).toContain('expireIn')
      }
    })

    it('wrong credentials are permanent, with Klavi\'s statusCode and message', async () => {
      const err = await providerError(adapter.mint({ ...klavi.secret, secretKey: 'wrong' }, testContext(credential())))
      expect(err).toMatchObject({ kind: 'permanent', status: 401, providerCode: '401' })
      expect(err.message).toContain('Invalid accessKey or secretKey')
    })

    it('names a missing secret field and sends nothing', async () => {
      const attempts = klavi.mintAttempts
      const err = await providerError(adapter.mint({ secretKey: 's' }, testContext(credential())))
      expect(err.kind).toBe('permanent')
      expect(err.message).toContain('"accessKey"')
      expect(klavi.mintAttempts).toBe(attempts)
    })

    it('5xx, 429, drops and timeouts are transient; bad JSON and a missing token are bad-responses', async () => {
      klavi.setFault({ kind: 'server-error' }, { times: 1 })
      expect(await providerError(adapter.mint(klavi.secret, testContext(credential())))).toMatchObject({ kind: 'transient', status: 503 })
      klavi.setFault({ kind: 'rate-limit', retryAfter: '11' }, { times: 1 })
      expect(await providerError(adapter.mint(klavi.secret, testContext(credential())))).toMatchObject({ kind: 'transient', retryAfterMs: 11_000 })
      klavi.setFault({ kind: 'drop' }, { times: 1 })
      expect(await providerError(adapter.mint(klavi.secret, testContext(credential())))).toMatchObject({ kind: 'transient' })
      klavi.setFault({ kind: 'latency', ms: 1500 }, { times: 1 })
      expect(await providerError(adapter.mint(klavi.secret, testContext(credential({ timeout_ms: 100 }))))).toMatchObject({ kind: 'transient' })
      klavi.setFault({ kind: 'malformed-json' }, { times: 1 })
      expect(await providerError(adapter.mint(klavi.secret, testContext(credential())))).toMatchObject({ kind: 'bad-response' })
      klavi.setFault({ kind: 'missing-token' }, { times: 1 })
      const err = await providerError(adapter.mint(klavi.secret, testContext(credential())))
      expect(err).toMatchObject({ kind: 'bad-response' })
      expect(err.message).toContain('accessToken')
    })
  })

  describe('refresh', () => {
    async function mintAt (now: number): Promise<Grant> {
      standInNow = now
      return await adapter.mint(klavi.secret, testContext(credential(), { now }))
    }

    it('calls GET /data/v1/refresh with the current token as Bearer and does not mint', async () => {
      const grant = await mintAt(fixedNow)
      const mints = klavi.mints
      const later = fixedNow + 1000_000
      standInNow = later
      const renewed = await refresh(grant, klavi.secret, testContext(credential(), { now: later }))

      expect(renewed.accessToken).not.toBe(grant.accessToken)
      expect(renewed).toMatchObject({ obtainedAt: later, expiresAt: later + 1_800_000 })
      expect(klavi.tokenInfo(renewed.accessToken)?.endpoint).toBe('refresh')
      expect(klavi.mints).toBe(mints)
      const sent = klavi.requests.at(-1)
      expect(sent).toMatchObject({ method: 'GET', path: '/data/v1/refresh', body: '' })
      expect(sent?.headers.authorization).toBe(`Bearer ${grant.accessToken}`)
    })

    it('falls back to mint when refresh answers 401 (token expired on Klavi\'s clock)', async () => {
      const grant = await mintAt(fixedNow)
      const { mints, refreshAttempts, refreshes } = klavi
      // Klavi's clock is past expiry while ours is not: only the provider can say the token is dead.
      standInNow = fixedNow + 1801_000
      const ctx = testContext(credential(), { now: fixedNow + 100_000 })
      const renewed = await refresh(grant, klavi.secret, ctx)

      expect(klavi.refreshAttempts).toBe(refreshAttempts + 1)
      expect(klavi.refreshes).toBe(refreshes)
      expect(klavi.mints).toBe(mints + 1)
      expect(klavi.tokenInfo(renewed.accessToken)?.endpoint).toBe('mint')
      expect(ctx.captured.entries().some(l => l.reason === 'refresh-rejected')).toBe(true)
    })

    it('falls back to mint for a token Klavi never issued', async () => {
      const forged: Grant = { accessToken: 'not-issued-by-klavi', tokenType: 'Bearer', obtainedAt: fixedNow, expiresAt: fixedNow + 1_800_000 }
      const mints = klavi.mints
      const renewed = await refresh(forged, klavi.secret, testContext(credential()))
      expect(klavi.mints).toBe(mints + 1)
      expect(klavi.isTokenValid(renewed.accessToken)).toBe(true)
    })

    it('mints directly when the grant has already expired on our clock', async () => {
      const grant = await mintAt(fixedNow)
      const refreshAttempts = klavi.refreshAttempts
      const renewed = await refresh(grant, klavi.secret, testContext(credential(), { now: grant.expiresAt }))
      expect(klavi.refreshAttempts).toBe(refreshAttempts)
      expect(klavi.tokenInfo(renewed.accessToken)?.endpoint).toBe('mint')
    })

    it('a 5xx on refresh is transient and does not fall back to mint', async () => {
      const grant = await mintAt(fixedNow)
      const mints = klavi.mints
      klavi.setFault({ kind: 'server-error', status: 500 }, { endpoint: 'refresh', times: 1 })
      const err = await providerError(refresh(grant, klavi.secret, testContext(credential())))
      expect(err).toMatchObject({ kind: 'transient', status: 500 })
      expect(err.message).toContain('klavi refresh')
      expect(klavi.mints).toBe(mints)
    })

    it('a 401 fallback with a rotated secret ends permanent', async () => {
      const grant = await mintAt(fixedNow)
      klavi.setFault({ kind: 'wrong-credentials' }, { endpoint: 'refresh', times: 1 })
      const err = await providerError(refresh(grant, { ...klavi.secret, secretKey: 'old' }, testContext(credential())))
      expect(err).toMatchObject({ kind: 'permanent', status: 401 })
      expect(err.message).toContain('klavi mint')
    })

    it('reads a string expireIn on refresh too', async () => {
      const grant = await mintAt(fixedNow)
      klavi.expireInAs = 'string'
      klavi.lifetimeSeconds = 1500
      const renewed = await refresh(grant, klavi.secret, testContext(credential()))
      expect(renewed.expiresAt).toBe(fixedNow + 1_500_000)
    })
  })
})
