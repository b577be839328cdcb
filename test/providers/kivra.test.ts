import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createKivraAdapter } from '../../src/providers/kivra.js'
import { fixedNow, providerError, testContext, testCredential } from '../support/providers/context.js'
import { startKivraStandIn, type KivraStandIn } from '../support/providers/kivra.js'
import { startScriptedServer } from '../support/scripted-server.js'

describe('kivra adapter', () => {
  const adapter = createKivraAdapter()
  let kivra: KivraStandIn

  beforeAll(async () => {
    // The stand-in's clock matters only for Retry-After dates; it shares the adapter's fixed instant.
    kivra = await startKivraStandIn({ now: () => fixedNow })
  })
  afterAll(async () => { await kivra.close() })
  beforeEach(() => {
    kivra.clearFaults()
    kivra.lifetimeSeconds = 28_800
    kivra.errorCodeAs = 'number'
  })

  const credential = (overrides: Record<string, unknown> = {}): ReturnType<typeof testCredential> =>
    testCredential('kivra', { base_url: kivra.url, scope: 'kivra.v1.tenant.abc.*', ...overrides })

  describe('mint', () => {
    it('posts Basic client_id:client_secret and a client_credentials form, and lives expires_in from the request time', async () => {
      const before = kivra.mints
      const ctx = testContext(credential())
      const grant = await adapter.mint(kivra.secret, ctx)

      expect(grant).toMatchObject({ tokenType: 'Bearer', obtainedAt: fixedNow, expiresAt: fixedNow + 28_800_000, scope: 'kivra.v1.tenant.abc.*' })
      expect(kivra.tokenInfo(grant.accessToken)).toBeDefined()
      expect(kivra.mints).toBe(before + 1)

      const sent = kivra.requests.at(-1)
      expect(sent?.method).toBe('POST')
      expect(sent?.path).toBe('/v1/auth')
      expect(sent?.headers['content-type']).toMatch(/^application\/x-www-form-urlencoded/)
      const basic = Buffer.from(String(sent?.headers.authorization).replace(/^Basic /, ''), 'base64').toString('utf8')
      expect(basic).toBe(`${kivra.secret.client_id}:${kivra.secret.client_secret}`)
      expect(Object.fromEntries(new URLSearchParams(sent?.body))).toEqual({ grant_type: 'client_credentials', scope: 'kivra.v1.tenant.abc.*' })
    })

    it('omits scope when none is configured and keeps the scope Kivra granted', async () => {
      const grant = await adapter.mint(kivra.secret, testContext(credential({ scope: undefined })))
      expect(new URLSearchParams(kivra.requests.at(-1)?.body).has('scope')).toBe(false)
      expect(grant.scope).toBe('kivra.v1.tenant.example.*')
    })

    it('follows the lifetime Kivra announces', async () => {
      kivra.lifetimeSeconds = 600
      const grant = await adapter.mint(kivra.secret, testContext(credential(), { now: fixedNow + 5000 }))
      expect(grant.expiresAt).toBe(fixedNow + 5000 + 600_000)
    })

    it('logs the x-correlation-id object-first with a fixed message', async () => {
      const ctx = testContext(credential())
      await adapter.mint(kivra.secret, ctx)
      const line = ctx.captured.entries().find(l => l.msg === 'kivra token minted')
      expect(line).toMatchObject({ credentialId: 'kivra-test', correlationId: kivra.lastCorrelationId })
      expect(kivra.lastCorrelationId).toMatch(/^[0-9a-f-]{36}$/)
    })

    it('falls back to lifetime_seconds, then the documented 8 h, when expires_in is missing', async () => {
      kivra.setFault({ kind: 'missing-lifetime' })
      const configured = await adapter.mint(kivra.secret, testContext(credential({ lifetime_seconds: 900 })))
      expect(configured.expiresAt).toBe(fixedNow + 900_000)
      const ctx = testContext(credential())
      const documented = await adapter.mint(kivra.secret, ctx)
      expect(documented.expiresAt).toBe(fixedNow + 28_800_000)
      expect(ctx.captured.entries().some(l => l.level === 40 && l.credentialId === 'kivra-test')).toBe(true)
    })
  })

  describe('wrong credentials', () => {
    it('is permanent with code 40104, the status and the correlation id (code as a number)', async () => {
      const err = await providerError(adapter.mint({ ...kivra.secret, client_secret: 'wrong' }, testContext(credential())))
      expect(err).toMatchObject({ kind: 'permanent', status: 401, providerCode: '40104', correlationId: kivra.lastCorrelationId })
      expect(err.message).toContain('rejected the client credentials')
      expect(err.message).toContain('invalid client')
    })

    it('reads the code when Kivra sends it as a string', async () => {
      kivra.errorCodeAs = 'string'
      const err = await providerError(adapter.mint({ ...kivra.secret, client_id: 'someone-else' }, testContext(credential())))
      expect(err).toMatchObject({ kind: 'permanent', providerCode: '40104' })
    })

    it('treats 40103 invalid grant as permanent too', async () => {
      kivra.setFault({ kind: 'wrong-credentials', code: '40103' }, { times: 1 })
      const err = await providerError(adapter.mint(kivra.secret, testContext(credential())))
      expect(err).toMatchObject({ kind: 'permanent', providerCode: '40103' })
    })

    it('names the missing secret field and sends nothing', async () => {
      const attempts = kivra.mintAttempts
      const err = await providerError(adapter.mint({ client_id: 'id-only' }, testContext(credential())))
      expect(err.kind).toBe('permanent')
      expect(err.message).toContain('"client_secret"')
      expect(kivra.mintAttempts).toBe(attempts)
    })
  })

  describe('transient failures', () => {
    it('5xx is transient with the status and Kivra code', async () => {
      kivra.setFault({ kind: 'server-error', status: 502 }, { times: 1 })
      const err = await providerError(adapter.mint(kivra.secret, testContext(credential())))
      expect(err).toMatchObject({ kind: 'transient', status: 502, providerCode: '50200' })
    })

    it('429 (42900) is transient with Retry-After in ms (delay-seconds)', async () => {
      kivra.setFault({ kind: 'rate-limit', retryAfter: '7' }, { times: 1 })
      const err = await providerError(adapter.mint(kivra.secret, testContext(credential())))
      expect(err).toMatchObject({ kind: 'transient', status: 429, providerCode: '42900', retryAfterMs: 7000 })
    })

    it('429 with an HTTP-date Retry-After counts from the injected clock', async () => {
      kivra.setFault({ kind: 'rate-limit', retryAfter: new Date(fixedNow + 30_000).toUTCString() }, { times: 1 })
      const err = await providerError(adapter.mint(kivra.secret, testContext(credential())))
      expect(err.retryAfterMs).toBe(30_000)
    })

    it('takes the code from x-error-code when the body is not Kivra JSON (e.g. a gateway page)', async () => {
      const gateway = await startScriptedServer((_request, res) => {
        res.writeHead(503, { 'content-type': 'text/html', 'x-error-code': '50300', 'x-correlation-id': 'corr-gw', 'retry-after': '4' })
        res.end('<html>maintenance</html>')
      })
      try {
        const err = await providerError(adapter.mint(kivra.secret, testContext(credential({ base_url: gateway.url }))))
        expect(err).toMatchObject({ kind: 'transient', status: 503, providerCode: '50300', correlationId: 'corr-gw', retryAfterMs: 4000 })
        expect(err.message).not.toContain('maintenance')
      } finally {
        await gateway.close()
      }
    })

    it('a dropped connection is transient', async () => {
      kivra.setFault({ kind: 'drop' }, { times: 1 })
      const err = await providerError(adapter.mint(kivra.secret, testContext(credential())))
      expect(err.kind).toBe('transient')
      expect(err.message).toContain('network error')
    })

    it('no answer within timeout_ms is transient, without waiting for the slow answer', async () => {
      kivra.setFault({ kind: 'latency', ms: 2000 }, { times: 1 })
      const started = Date.now()
      const err = await providerError(adapter.mint(kivra.secret, testContext(credential({ timeout_ms: 150 }))))
      expect(err.kind).toBe('transient')
      expect(err.message).toContain('no answer within 150 ms')
      expect(Date.now() - started).toBeLessThan(1500)
    })

    it('an abort from ctx.signal is transient', async () => {
      kivra.setFault({ kind: 'latency', ms: 2000 }, { times: 1 })
      const controller = new AbortController()
      const call = adapter.mint(kivra.secret, testContext(credential(), { signal: controller.signal }))
      setTimeout(() => { controller.abort() }, 50)
      const err = await providerError(call)
      expect(err).toMatchObject({ kind: 'transient', message: 'kivra mint: request aborted' })
    })

    it('a refused connection is transient', async () => {
      const gone = await startKivraStandIn()
      const url = gone.url
      await gone.close()
      const err = await providerError(adapter.mint(kivra.secret, testContext(credential({ base_url: url }))))
      expect(err.kind).toBe('transient')
      expect(err.message).toContain('ECONNREFUSED')
    })
  })

  describe('malformed answers', () => {
    it('malformed JSON on 200 is a bad-response', async () => {
      kivra.setFault({ kind: 'malformed-json' }, { times: 1 })
      const err = await providerError(adapter.mint(kivra.secret, testContext(credential())))
      expect(err).toMatchObject({ kind: 'bad-response', status: 200 })
      expect(err.message).toContain('not JSON')
    })

    it('a 200 without access_token is a bad-response naming the field', async () => {
      kivra.setFault({ kind: 'missing-token' }, { times: 1 })
      const err = await providerError(adapter.mint(kivra.secret, testContext(credential())))
      expect(err.kind).toBe('bad-response')
      expect(err.message).toContain('access_token')
    })

    it('a garbage expires_in is a bad-response, not a guessed lifetime', async () => {
      for (const value of ['soon', -5, 0, null]) {
        kivra.setFault({ kind: 'malformed-lifetime', value }, { times: 1 })
        const err = await providerError(adapter.mint(kivra.secret, testContext(credential())))
        expect(err.kind).toBe('bad-response')
        expect(err.message).toContain('expires_in')
      }
    })
  })
})
