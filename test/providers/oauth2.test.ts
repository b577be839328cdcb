import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createOAuth2Adapter, isLoopbackHost } from '../../src/providers/oauth2.js'
import { fixedNow, providerError, testContext, testCredential } from '../support/providers/context.js'
import { startOAuth2StandIn, type OAuth2StandIn } from '../support/providers/oauth2.js'

describe('oauth2 adapter against the RFC 6749 stand-in', () => {
  const adapter = createOAuth2Adapter()
  let as: OAuth2StandIn

  beforeAll(async () => { as = await startOAuth2StandIn({ now: () => fixedNow, allowedScopes: ['read', 'write'] }) })
  afterAll(async () => { await as.close() })
  beforeEach(() => {
    as.clearFaults()
    as.lifetimeSeconds = 3600
    as.authMethod = 'any'
    as.secret = { client_id: 'oauth2-client', client_secret: 'oauth2-client-secret' }
  })

  const credential = (overrides: Record<string, unknown> = {}): ReturnType<typeof testCredential> =>
    testCredential('oauth2', { token_url: as.tokenUrl, ...overrides })

  describe('client authentication', () => {
    it('client_secret_basic: Basic header, no secret in the body; scope and audience sent', async () => {
      as.authMethod = 'basic'
      const grant = await adapter.mint(as.secret, testContext(credential({ client_auth: 'basic', scope: 'read', audience: 'https://api.example.test' })))
      expect(grant).toMatchObject({ tokenType: 'Bearer', obtainedAt: fixedNow, expiresAt: fixedNow + 3_600_000, scope: 'read' })
      expect(as.isTokenValid(grant.accessToken)).toBe(true)
      expect(as.lastAuthMethod).toBe('basic')
      expect(as.requests.at(-1)?.body).not.toContain('client_secret')
      expect(Object.fromEntries(as.lastParams ?? [])).toEqual({ grant_type: 'client_credentials', scope: 'read', audience: 'https://api.example.test' })
    })

    it('client_secret_post: client_id and client_secret in the form', async () => {
      as.authMethod = 'post'
      const grant = await adapter.mint(as.secret, testContext(credential({ client_auth: 'post' })))
      expect(as.isTokenValid(grant.accessToken)).toBe(true)
      expect(as.lastAuthMethod).toBe('post')
      expect(as.requests.at(-1)?.headers.authorization).toBeUndefined()
      expect(as.lastParams?.get('client_id')).toBe('oauth2-client')
      expect(as.lastParams?.has('audience')).toBe(false)
    })

    it('form-encodes id and secret inside Basic (RFC 6749 §2.3.1), so special characters survive', async () => {
      as.secret = { client_id: 'svc:billing', client_secret: 'p@ss word+/%=:' }
      const grant = await adapter.mint(as.secret, testContext(credential()))
      expect(as.isTokenValid(grant.accessToken)).toBe(true)
    })
  })

  describe('rejections', () => {
    it('a wrong secret with Basic (401 + WWW-Authenticate) is permanent invalid_client', async () => {
      const err = await providerError(adapter.mint({ ...as.secret, client_secret: 'wrong' }, testContext(credential())))
      expect(err).toMatchObject({ kind: 'permanent', status: 401, providerCode: 'invalid_client' })
      expect(err.message).toContain('rejected the client credentials')
    })

    it('a wrong secret with post (401 JSON body) is permanent invalid_client', async () => {
      const err = await providerError(adapter.mint({ ...as.secret, client_secret: 'wrong' }, testContext(credential({ client_auth: 'post' }))))
      expect(err).toMatchObject({ kind: 'permanent', status: 401, providerCode: 'invalid_client' })
    })

    it('a method the client is not registered for is permanent', async () => {
      as.authMethod = 'post'
      const err = await providerError(adapter.mint(as.secret, testContext(credential({ client_auth: 'basic' }))))
      expect(err).toMatchObject({ kind: 'permanent', status: 401 })
    })

    it('invalid_scope is permanent (configuration, retrying cannot help)', async () => {
      const err = await providerError(adapter.mint(as.secret, testContext(credential({ scope: 'admin' }))))
      expect(err).toMatchObject({ kind: 'permanent', status: 400, providerCode: 'invalid_scope' })
    })

    it('names a missing secret field', async () => {
      const err = await providerError(adapter.mint({ client_id: 'x' }, testContext(credential())))
      expect(err).toMatchObject({ kind: 'permanent' })
      expect(err.message).toContain('"client_secret"')
    })
  })

  describe('transient failures', () => {
    it('5xx and 429 + Retry-After are transient', async () => {
      as.setFault({ kind: 'server-error', status: 503 }, { times: 1 })
      expect(await providerError(adapter.mint(as.secret, testContext(credential())))).toMatchObject({ kind: 'transient', status: 503 })
      as.setFault({ kind: 'rate-limit', retryAfter: '12' }, { times: 1 })
      expect(await providerError(adapter.mint(as.secret, testContext(credential())))).toMatchObject({ kind: 'transient', status: 429, retryAfterMs: 12_000 })
    })

    it('a dropped connection, a timeout and an abort are transient', async () => {
      as.setFault({ kind: 'drop' }, { times: 1 })
      const dropped = await providerError(adapter.mint(as.secret, testContext(credential())))
      expect(dropped).toMatchObject({ kind: 'transient' })
      expect(dropped.message).toContain('network error')

      as.setFault({ kind: 'latency', ms: 2000 }, { times: 1 })
      const started = Date.now()
      const slow = await providerError(adapter.mint(as.secret, testContext(credential({ timeout_ms: 150 }))))
      expect(slow).toMatchObject({ kind: 'transient', message: 'oauth2 mint: no answer within 150 ms' })
      expect(Date.now() - started).toBeLessThan(1500)

      as.setFault({ kind: 'latency', ms: 2000 }, { times: 1 })
      const controller = new AbortController()
      const attempts = as.mintAttempts
      const call = adapter.mint(as.secret, testContext(credential(), { signal: controller.signal }))
      // Abort once the stand-in holds the request (and has used up the fault): a request still on its way
      // when this test ends would take the next test's fault instead.
      const held = setInterval(() => { if (as.mintAttempts > attempts) { clearInterval(held); controller.abort() } }, 5)
      const error = await providerError(call).finally(() => { clearInterval(held) })
      expect(error).toMatchObject({ kind: 'transient', message: 'oauth2 mint: request aborted' })
    })
  })

  describe('malformed answers and lifetimes', () => {
    it('malformed JSON, a missing access_token and a garbage expires_in are bad-responses', async () => {
      as.setFault({ kind: 'malformed-json' }, { times: 1 })
      expect(await providerError(adapter.mint(as.secret, testContext(credential())))).toMatchObject({ kind: 'bad-response', status: 200 })
      as.setFault({ kind: 'missing-token' }, { times: 1 })
      expect(await providerError(adapter.mint(as.secret, testContext(credential())))).toMatchObject({ kind: 'bad-response' })
      as.setFault({ kind: 'malformed-lifetime', value: 'soon' }, { times: 1 })
      expect(await providerError(adapter.mint(as.secret, testContext(credential())))).toMatchObject({ kind: 'bad-response' })
    })

    it('an expires_in of 0, negative or beyond a year is a bad answer, never a guessed hour', async () => {
      for (const value of [0, -60, 10 ** 12]) {
        as.setFault({ kind: 'malformed-lifetime', value }, { times: 1 })
        const err = await providerError(adapter.mint(as.secret, testContext(credential({ lifetime_seconds: 600 }))))
        // oauth4webapi refuses some of these itself (OAUTH_INVALID_RESPONSE), the adapter the rest.
        expect(err).toMatchObject({ kind: 'bad-response', status: 200 })
      }
    })

    it('accepts a numeric-string expires_in', async () => {
      as.setFault({ kind: 'malformed-lifetime', value: '120' }, { times: 1 })
      const grant = await adapter.mint(as.secret, testContext(credential()))
      expect(grant.expiresAt).toBe(fixedNow + 120_000)
    })

    it('without expires_in uses lifetime_seconds, else one hour, and warns', async () => {
      as.setFault({ kind: 'missing-lifetime' }, { times: 2 })
      expect((await adapter.mint(as.secret, testContext(credential({ lifetime_seconds: 300 })))).expiresAt).toBe(fixedNow + 300_000)
      const ctx = testContext(credential())
      expect((await adapter.mint(as.secret, ctx)).expiresAt).toBe(fixedNow + 3_600_000)
      expect(ctx.captured.entries().some(l => l.level === 40 && l.credentialId === 'oauth2-test')).toBe(true)
    })
  })

  describe('token_url', () => {
    it('allows plain http only on loopback hosts', () => {
      for (const host of ['127.0.0.1', '127.8.9.10', 'localhost', '[::1]', '::1']) expect(isLoopbackHost(host)).toBe(true)
      for (const host of ['example.com', '10.0.0.1', '128.0.0.1', '127.0.0.1.nip.io', 'localhost.example.com']) expect(isLoopbackHost(host)).toBe(false)
    })

    it('refuses plain http elsewhere before any network call (permanent)', async () => {
      // ".invalid" never resolves (RFC 2606), and the adapter refuses before any I/O anyway. The config
      // refuses such a URL too (test/config/credential-rules.test.ts); this is the adapter's own guard.
      const insecure = { ...credential(), token_url: 'http://token.broker-test.invalid/oauth/token' }
      const err = await providerError(adapter.mint(as.secret, testContext(insecure)))
      expect(err.kind).toBe('permanent')
      expect(err.message).toContain('https')
    })
  })
})
